"""`area_cap`: the area each mask but the last claims above `cap` (a share of the image), a
guard against the collapse. In the decomposition the mask recipes reach, the tokens take one
object each and the last token takes what is left, the background, so no earlier mask needs
more than an object's area; in the collapse (seed 2 of `inherent` on an AVX-512 host) the
first mask takes about the whole image and later tokens take specks. This loss is zero on the
first and prices the second, without the pull on every object's mask that `claimed_area`
has. Scenes whose objects may cover more than `cap` of the image want a larger cap.
"""

import attrs

from vle_kit import hookimpl
from vle_kit.interfaces import MaskLoss, MaskLossConfig


@attrs.frozen(kw_only=True)
class AreaCapConfig(MaskLossConfig):
    cap: float = attrs.field(default=0.5, validator=[attrs.validators.ge(0),
                                                     attrs.validators.le(1)])


class AreaCapLoss(MaskLoss):
    Config = AreaCapConfig
    min_tokens = 2  # one token: its mask is the whole image by design

    def forward(self, masks, images):
        area = masks[:, :-1].flatten(2).mean(2)  # (B, K - 1)
        return (area - self.cfg.cap).clamp_min(0).mean()


@hookimpl
def register_mask_losses(register):
    register("area_cap", AreaCapLoss)
