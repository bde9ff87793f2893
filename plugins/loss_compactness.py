"""`compactness`: how much further each mask's pixels lie from the mask's centre than those of
a disc of the same area would. The mean squared distance of a mask's pixels from its centre
(its moment of inertia over its area) is least for a disc, a / 2 pi for a disc of area a (both
in units of the image's area); a token holding two objects apart from each other, or a ring
around an object, lies far beyond that (two 6-pixel discs 15 pixels apart: about 0.05 of the
image's area above it; a one-pixel ring of radius 5: 0.02), a single compact object near it.
So it prices the merges of similarly coloured objects that `piecewise_constant` lets through
(masks.png of `inherent`: merged objects often share a hue), and the rings `sliver` prices.
Beside `inherent`'s losses it cuts the merges (by half at weight 30) but rounds objects into
blobs (crosses lose their arms): FG-ARI falls (README, "Mask models"); no recipe uses it.

Masks larger than `max_area` are not priced (the background, which surrounds the objects);
a mask smaller than `min_area` is divided by that area instead of its own, so faint masks pay
in proportion to what they hold rather than the spread of their faint rest.
"""

import math

import attrs
import torch
from torch import Tensor

from vle_kit import hookimpl
from vle_kit.interfaces import MaskLoss, MaskLossConfig


@attrs.frozen(kw_only=True)
class CompactnessConfig(MaskLossConfig):
    max_area: float = attrs.field(default=0.5, validator=[attrs.validators.gt(0),
                                                          attrs.validators.le(1)])
    min_area: float = attrs.field(default=0.02, validator=[attrs.validators.gt(0),
                                                           attrs.validators.le(1)])


def spread_beyond_disc(masks: Tensor, min_area: float) -> tuple[Tensor, Tensor]:
    """(B, K, H, W) masks in [0, 1] -> (B, K) each mask's mean squared distance from its
    centre less a disc's of its area, and (B, K) its area, both as shares of the image."""
    h, w = masks.shape[-2:]
    unit = math.sqrt(h * w)  # lengths in units of the square root of the image's area
    y = (torch.arange(h, device=masks.device, dtype=masks.dtype)[:, None] + 0.5) / unit
    x = (torch.arange(w, device=masks.device, dtype=masks.dtype)[None, :] + 0.5) / unit
    area = masks.mean((2, 3))
    held = area.clamp_min(1e-9)  # an empty mask's centre: anywhere, its spread is 0
    cy = (masks * y).mean((2, 3)) / held
    cx = (masks * x).mean((2, 3)) / held
    distance = (y - cy[..., None, None]).pow(2) + (x - cx[..., None, None]).pow(2)
    spread = (masks * distance).mean((2, 3)) / area.clamp_min(min_area)
    return spread - area / (2 * math.pi), area


class CompactnessLoss(MaskLoss):
    Config = CompactnessConfig

    def forward(self, masks, images):
        m = masks[:, :, 0].clamp(0, 1)  # (B, K, H, W)
        excess, area = spread_beyond_disc(m, self.cfg.min_area)
        priced = area.detach() <= self.cfg.max_area
        return (excess.clamp_min(0) * priced).sum(1).mean()  # summed over masks, mean over images


@hookimpl
def register_mask_losses(register):
    register("compactness", CompactnessLoss)
