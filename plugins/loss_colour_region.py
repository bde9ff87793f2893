"""`colour_region`: a mask should hold the whole region of one colour that its core sits on,
where no earlier mask holds it: the complement of `piecewise_constant`, which prices a mask's
pixels of other colours but not the pixels of its own colour it leaves (a cross's arms, left
to the last token, cost that loss nothing).

Each mask's core is the pixel where its 3 x 3 erosion is largest; a mask whose core holds half
or less has no region. The region grows from the core, one pixel in every direction a round,
for `reach` rounds, through pixels within `tolerance` of the core's colour (squared distance
over the channels, images in [-1, 1]) that earlier masks leave more than half free: pixels
connected to the core by its colour, not every pixel of the colour near the mask, so a mask
is drawn along its object and not into the scene. A colour that covers more than `max_area`
of the image (claimed or not) is the scene's ground, not an object, and no mask is pushed to
take it: a token on the background would grow into it, and once a token holds some of it, the
pieces it leaves would be small enough to pass for objects (seeds 1 and 2 of `placed.toml` with
a gate on the free region's area: the first tokens took the scene). Nor is a region smaller
than `min_area`, what earlier tokens left of an object, which a token after them should leave
too. The loss is the share of its region the mask leaves, summed over the masks and averaged
over the images' pixels.

On `placed.toml` at 30, seeds 0-3: FG-ARI 0.829 against 0.816, a tenth fewer arms missed, but
more merges and the first prefix past 1.5x PCA in two seeds, so not in the recipe (README,
"Mask models").
"""

import attrs
import torch
import torch.nn.functional as F

from vle_kit import hookimpl
from vle_kit.interfaces import MaskLoss, MaskLossConfig


@attrs.frozen(kw_only=True)
class ColourRegionConfig(MaskLossConfig):
    tolerance: float = attrs.field(default=0.1, validator=attrs.validators.gt(0))
    reach: int = attrs.field(default=16, validator=attrs.validators.ge(1))  # pixels
    min_area: float = attrs.field(default=0.01, validator=attrs.validators.ge(0))
    max_area: float = attrs.field(default=0.2, validator=[attrs.validators.gt(0),
                                                          attrs.validators.le(1)])


def grow(region: torch.Tensor, edge: float = 0.0) -> torch.Tensor:
    """(..., H, W) -> its 3 x 3 dilation, beyond the image's edge `edge` (at most the least
    value: the edge then grows nothing): the maximum of shifted copies, a twentieth of the time
    of `max_pool2d` on the CPU, where regions grow for 16 rounds a step."""
    r = F.pad(region, (1, 1, 1, 1), value=edge)
    r = torch.maximum(torch.maximum(r[..., :-2], r[..., 1:-1]), r[..., 2:])
    return torch.maximum(torch.maximum(r[..., :-2, :], r[..., 1:-1, :]), r[..., 2:, :])


def free_of_earlier(masks: torch.Tensor) -> torch.Tensor:
    """(B, K, H, W) masks -> what the masks before each left of every pixel."""
    return 1 - (masks.cumsum(1) - masks).clamp(0, 1)


def cores(masks: torch.Tensor, images: torch.Tensor, tolerance: float,
          max_area: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(B, K, H, W) masks, (B, C, H, W) images -> each mask's core pixel (B, K), where its 3 x 3
    erosion is largest; whether the mask holds it above one half (B, K, 1); and the pixels of
    the core's colour (B, K, HW), none where that colour covers more than `max_area` of the
    image (the ground)."""
    core = -grow(-masks, edge=-1.0).flatten(2)  # the erosion, the image's edge eroding nothing
    at = core.argmax(2)  # (B, K)
    held = core.gather(2, at[..., None]) > 0.5
    x = images.flatten(2)  # (B, C, HW)
    colour = x.gather(2, at[:, None].expand(-1, x.shape[1], -1))  # (B, C, K)
    alike = (x[:, None] - colour.transpose(1, 2)[..., None]).pow(2).sum(2) < tolerance
    ground = alike.float().mean(2, keepdim=True) > max_area  # (B, K, 1)
    return at, held, alike & ~ground


def colour_regions(masks: torch.Tensor, free: torch.Tensor, images: torch.Tensor,
                   tolerance: float, reach: int, min_area: float,
                   max_area: float) -> torch.Tensor:
    """(B, K, H, W) masks and what earlier ones left of them (`free_of_earlier`), (B, C, H, W)
    images -> (B, K, H, W) 0/1: each mask's colour region."""
    b, k, h, w = masks.shape
    at, held, kin = cores(masks, images, tolerance, max_area)  # no held core, no seed
    allowed = (kin & (free.flatten(2) > 0.5)).float().view(b, k, h, w)
    region = masks.new_zeros(b, k, h * w).scatter(2, at[..., None], held.float()).view(b, k, h, w)
    for _ in range(reach):  # no early stop: `vle-kit run` sizes the model on meta tensors
        region = grow(region) * allowed
    return region * (region.mean((2, 3), keepdim=True) >= min_area)


class ColourRegionLoss(MaskLoss):
    Config = ColourRegionConfig

    def forward(self, masks, images):
        m = masks[:, :, 0]  # (B, K, H, W) in [0, 1]; not clamped: a clamp passes no gradient at 0
        with torch.no_grad():
            free = free_of_earlier(m)
            region = colour_regions(m, free, images, self.cfg.tolerance, self.cfg.reach,
                                    self.cfg.min_area, self.cfg.max_area)
        return (region * (free - m).clamp_min(0)).sum(1).mean()


@hookimpl
def register_mask_losses(register):
    register("colour_region", ColourRegionLoss)
