"""`conv`: a small convolutional head that sees what the tokens so far have drawn (the
reconstruction, the new part and the masks' running sum), not the image, so its masks follow
from the tokens: they add no information the tokens do not hold, and saved tokens decode
without them."""

import torch

from vle_kit import hookimpl
from vle_kit.masks import ConvMaskHead


class ConvSaliencyHead(ConvMaskHead):
    from_tokens = True

    def input_channels(self, image_channels):
        return 2 * image_channels + 1  # recon, part, mask_sum

    def inputs(self, state, part):
        return torch.cat([state.recon, part, state.mask_sum], 1)


@hookimpl
def register_saliency_heads(register):
    register("conv", ConvSaliencyHead)
