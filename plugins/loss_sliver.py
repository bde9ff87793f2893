"""`sliver`: the share of each mask that a 3 x 3 morphological opening (erosion, then
dilation) removes. Rings and strips a pixel or two wide, which middle tokens take around
objects earlier tokens drew (masks.png of `inherent`), cost their whole area; compact regions
cost only their corners, an empty or a full mask nothing. Where `sparsity` counts small masks,
this prices thin ones, so a token does better claiming a whole object or nothing.

Erosion and dilation are max-pools (of the negated mask, then of the eroded one), padded so
the image's edge erodes nothing: the background touching the border is not a sliver.
"""

import torch
import torch.nn.functional as F
from torch import Tensor

from vle_kit import hookimpl
from vle_kit.interfaces import MaskLoss


def opening(masks: Tensor) -> Tensor:
    """(N, C, H, W) -> the 3 x 3 opening of each channel: the largest mask below it that is a
    union of 3 x 3 squares (grey-level: the min over each square, then the max)."""
    eroded = -F.max_pool2d(-masks, 3, stride=1, padding=1)
    return F.max_pool2d(eroded, 3, stride=1, padding=1)


class SliverLoss(MaskLoss):
    def forward(self, masks, images):
        # (B, K, H, W) channels-last: the pools run along the K masks of a pixel together,
        # about 3x faster (forward and backward) than over B * K one-channel images
        m = masks[:, :, 0].contiguous(memory_format=torch.channels_last)  # in [0, 1]
        return (m - opening(m)).mean()


@hookimpl
def register_mask_losses(register):
    register("sliver", SliverLoss)
