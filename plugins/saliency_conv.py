"""`conv`: a small convolutional head that sees the input, the state and the new part."""

import torch

from vle_kit import hookimpl
from vle_kit.masks import ConvMaskHead


class ConvSaliencyHead(ConvMaskHead):
    def input_channels(self, image_channels):
        return 3 * image_channels + 1  # x, recon, part, mask_sum

    def inputs(self, state, part):
        return torch.cat([state.x, state.recon, part, state.mask_sum], 1)


@hookimpl
def register_saliency_heads(register):
    register("conv", ConvSaliencyHead)
