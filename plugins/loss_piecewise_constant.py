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
import torch

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
        m = masks.clamp(0, 1).flatten(2).double()  # (B, K, H * W)
        x = images.flatten(2).double()  # (B, C, H * W)
        # each mask's area and first two colour moments in one product, never the (B, K, C,
        # H, W) tensor of squared deviations (5x faster, forward and backward); in float64, as
        # the spread is a difference of moments
        moments = m @ torch.cat([torch.ones_like(x[:, :1]), x, x * x], 1).transpose(1, 2)
        area, first, second = moments.split([1, x.shape[1], x.shape[1]], 2)
        mean = first / area.clamp_min(1e-6)  # each mask's colour, (B, K, C)
        spread = second - 2 * mean * first + mean.square() * area  # sum of m (x - mean)^2
        if self.cfg.normalize == "image":
            value = spread.sum(1).mean() / m.shape[2]
        else:
            floor = self.cfg.min_area * m.shape[2]
            value = (spread / area.clamp_min(floor)).mean(2).sum(1).mean()
        return value.clamp_min(0).to(masks.dtype)  # 0, not -1e-17, where every mask is flat


@hookimpl
def register_mask_losses(register):
    register("piecewise_constant", PiecewiseConstantLoss)
