"""`speck`: prices masks smaller than an object, without making an empty mask cheaper than an
object's. In `inherent`, tokens past the objects take specks of 5-10 pixels around objects
already drawn; each is a non-empty mask too many. `sparsity` prices them but also makes every
empty mask cheaper than an object's, which pulls towards the collapse (README, "Mask models").

Each mask of area a (its mean over the image) costs a (1 - a / size) / (size / 4) below
`size` and nothing above it: 0 for an empty mask and for any mask of an object's size, 1 at
a = size / 2. Masks smaller than size / 2 are pushed to empty, those between it and `size` to
grow: size should be twice a speck's area and no more than the smallest objects'. The mean
over the batch and the K tokens is returned.
"""

import attrs

from vle_kit import hookimpl
from vle_kit.interfaces import MaskLoss, MaskLossConfig


@attrs.frozen(kw_only=True)
class SpeckConfig(MaskLossConfig):
    size: float = attrs.field(default=0.02, validator=[attrs.validators.gt(0),
                                                       attrs.validators.le(1)])  # of the image


class SpeckLoss(MaskLoss):
    Config = SpeckConfig

    def forward(self, masks, images):
        size = self.cfg.size
        area = masks.flatten(2).mean(2)  # (B, K); masks are in [0, 1]
        return (area * (1 - area / size).clamp_min(0)).mean() * (4 / size)


@hookimpl
def register_mask_losses(register):
    register("speck", SpeckLoss)
