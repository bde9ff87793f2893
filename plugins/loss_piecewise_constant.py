"""`piecewise_constant`: each mask should cover a region of one colour.

The mask-weighted variance of the image under each mask, summed over the masks and averaged
over pixels and channels: the piecewise-constant energy of Chan-Vese / Mumford-Shah, a soft
k-means in colour space. It is 0 when every mask covers a flat-coloured region, and a mask
spread over the whole scene pays the scene's whole colour variance.

Averaged over the image (`normalize = "image"`, the default), a mask pays in proportion to its
area, so a token that takes two small objects of different colours pays little. With
`normalize = "area"` each mask pays its own colour variance, whatever its size: merging two
small objects costs as much as merging two large ones. A mask smaller than `min_area` (a share
of the image) is divided by that area instead, so near-empty masks pay in proportion to what
they hold rather than the variance of the faint rest they spread over.
"""

import attrs

from vle_kit import hookimpl
from vle_kit.interfaces import MaskLoss, MaskLossConfig


@attrs.frozen(kw_only=True)
class PiecewiseConstantConfig(MaskLossConfig):
    normalize: str = attrs.field(default="image", validator=attrs.validators.in_(("image", "area")))
    min_area: float = attrs.field(default=0.02, validator=[attrs.validators.gt(0),
                                                            attrs.validators.le(1)])


class PiecewiseConstantLoss(MaskLoss):
    Config = PiecewiseConstantConfig

    def forward(self, masks, images):
        m = masks.clamp(0, 1)  # (B, K, 1, H, W)
        x = images[:, None]  # (B, 1, C, H, W)
        area = m.sum(dim=(3, 4), keepdim=True)
        mean = (m * x).sum(dim=(3, 4), keepdim=True) / area.clamp_min(1e-6)  # each mask's colour
        spread = m * (x - mean).pow(2)
        if self.cfg.normalize == "image":
            return spread.sum(1).mean()
        floor = self.cfg.min_area * m.shape[-1] * m.shape[-2]
        variance = spread.sum(dim=(3, 4), keepdim=True) / area.clamp_min(floor)  # (B, K, C, 1, 1)
        return variance.flatten(2).mean(2).sum(1).mean()  # summed over masks, mean over images


@hookimpl
def register_mask_losses(register):
    register("piecewise_constant", PiecewiseConstantLoss)
