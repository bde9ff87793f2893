"""`raw_mask`: the encoder sees the image and the masks' running sum as an extra channel."""

import torch

from vle_kit import hookimpl
from vle_kit.interfaces import Composer


class RawMaskComposer(Composer):
    extra_channels = 1

    def forward(self, x, state):
        return torch.cat([x, state.mask_sum], dim=1)


@hookimpl
def register_composers(register):
    register("raw_mask", RawMaskComposer)
