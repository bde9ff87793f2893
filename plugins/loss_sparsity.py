"""`sparsity`: a soft count of the non-empty masks, so tokens past the objects stay silent
(empty masks) instead of taking slivers the earlier masks left, and the number of tokens an
image uses follows the number of its objects (AdaSlot's count penalty; GENESIS-v2 stops at the
first empty mask).

Each mask costs 1 - exp(-area / scale), its area being its mean over the image: about 1 for
a mask of an object, nothing for an empty one, and most of its gradient goes to small masks.
The mean over the batch and the K tokens is returned.
"""

import attrs
import torch

from vle_kit import hookimpl
from vle_kit.interfaces import MaskLoss, MaskLossConfig


@attrs.frozen(kw_only=True)
class SparsityConfig(MaskLossConfig):
    scale: float = attrs.field(default=0.01, validator=attrs.validators.gt(0))  # of the image


class SparsityLoss(MaskLoss):
    Config = SparsityConfig

    def forward(self, masks, images):
        area = masks.flatten(2).mean(2)  # (B, K); masks are in [0, 1]
        return (1 - torch.exp(-area / self.cfg.scale)).mean()


@hookimpl
def register_mask_losses(register):
    register("sparsity", SparsityLoss)
