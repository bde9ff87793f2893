"""`sliver`: the share of each mask that a 3 x 3 morphological opening (erosion, then
dilation; `decomposition.opening`) removes. Rings and strips a pixel or two wide, which middle
tokens take around objects earlier tokens drew (masks.png of `inherent`), cost their whole
area; compact regions cost only their corners, an empty or a full mask nothing. Where
`sparsity` counts small masks, this prices thin ones, so a token does better claiming a whole
object or nothing. The image's edge erodes nothing: the background touching the border is not
a sliver. The opening also takes the objects' own thin parts (corners, the arms of small
crosses), but tokens miss those as often without this loss (README, "Mask models").
"""

import torch

from vle_kit import hookimpl
from vle_kit.decomposition import opening
from vle_kit.interfaces import MaskLoss


class SliverLoss(MaskLoss):
    def forward(self, masks, images):
        # (B, K, H, W) channels-last: the pools run along the K masks of a pixel together,
        # about 3x faster (forward and backward) than over B * K one-channel images
        m = masks[:, :, 0].contiguous(memory_format=torch.channels_last)  # in [0, 1]
        return (m - opening(m)).mean()


@hookimpl
def register_mask_losses(register):
    register("sliver", SliverLoss)
