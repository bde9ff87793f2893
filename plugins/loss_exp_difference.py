"""`exp_difference`: e^(-scale * d) penalises a mask that repeats the previous mask or the sum of
all previous masks (notes, Apr 12: the fix for "one full mask, one empty mask, repeated").

d is the squared difference of the two masks, averaged over the image (`normalize = "image"`,
the notebook's form) or divided by the area the two masks cover (`"area"`, the default): averaged
over the image, two small disjoint objects differ by little and are penalised almost like a
repeat, so the notebook's form alone prefers the collapse to a true split of small objects.
"""

import attrs
import torch

from vle_kit import hookimpl
from vle_kit.interfaces import MaskLoss, MaskLossConfig


@attrs.frozen(kw_only=True)
class ExpDifferenceConfig(MaskLossConfig):
    scale: float = attrs.field(default=5.0, validator=attrs.validators.gt(0))
    normalize: str = attrs.field(default="area", validator=attrs.validators.in_(("area", "image")))


class ExpDifferenceLoss(MaskLoss):
    Config = ExpDifferenceConfig
    min_tokens = 2  # a mask is compared with those before it

    def difference(self, a, b):
        """(B, T, 1, H, W) pairs -> (B, T) differences in [0, 1]."""
        squared = (a - b).pow(2).flatten(2)
        if self.cfg.normalize == "image":
            return squared.mean(2)
        return squared.sum(2) / (a + b).flatten(2).sum(2).clamp_min(1.0)

    def forward(self, masks, images):
        m = masks.clamp(0, 1)
        current, previous = m[:, 1:], m[:, :-1]
        before = m.cumsum(1)[:, :-1].clamp(max=1)
        penalty = (torch.exp(-self.cfg.scale * self.difference(current, previous))
                   + torch.exp(-self.cfg.scale * self.difference(current, before)))
        return penalty.mean() / 2


@hookimpl
def register_mask_losses(register):
    register("exp_difference", ExpDifferenceLoss)
