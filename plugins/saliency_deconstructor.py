"""`deconstructor`: the head sees the input and the reconstruction the new part would give
(notes, Apr 29: the saliency model as a deconstructor, paired with the `constructor` combiner).

Its masks look at the image, so they carry information no token holds: saved tokens decode
only with their masks, and the evaluation counts the masks' floats beside PCA."""

import torch

from vle_kit import hookimpl
from vle_kit.masks import ConvMaskHead


class DeconstructorHead(ConvMaskHead):
    def input_channels(self, image_channels):
        return 2 * image_channels

    def inputs(self, state, part):
        return torch.cat([state.x, state.recon + part], 1)


@hookimpl
def register_saliency_heads(register):
    register("deconstructor", DeconstructorHead)
