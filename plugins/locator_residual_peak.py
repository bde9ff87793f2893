"""`residual_peak`: every token but the last looks where the most is left to explain, and may
claim only near there (README, "Mask models": this breaks the recipe's colour slots, so the
tokens take the objects in turn and then fall silent).

The place is chosen without learning: the pixel where the residual x - recon, less its mean
colour, squared and times what no mask has claimed, is largest averaged over 7 x 7 pixels; at
the first token that is what differs most from the scene's mean colour, usually an object.
The window around it is 1 out to 0.91 `radius` and falls as steeply beyond, min(1, 2
exp(-(d / radius)^4)): 0.5 at 1.09 radius, 0.08 at 1.3. The last token has no place: it takes
what is left, the background among it.
"""

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor

from vle_kit import hookimpl
from vle_kit.interfaces import Locator

WHOLE = 0.91  # a `flat_window` is 1 out to this share of its radius ((ln 2)^(1/4), rounded)


class ResidualPeakLocator(Locator):
    @attrs.frozen(kw_only=True)
    class Config:
        radius: float = attrs.field(default=9.0, validator=attrs.validators.gt(0))  # pixels

    extra_channels = 1

    def placed(self, state):
        return state.step < state.k - 1

    def place(self, state):
        place = coordinates(peak(residual(state), state.mask_sum), state.x)
        return place, self.window(place, state.x)  # the encoder sees where its token may claim

    def radius(self, place: Tensor, like: Tensor) -> Tensor:
        """The window's radius in pixels (B,) for `place`."""
        return torch.full_like(place[:, 0], self.cfg.radius)

    def window(self, place, like):
        if place is None:
            return super().window(place, like)
        return flat_window(place[:, :2], self.radius(place, like), like)


def residual(state) -> Tensor:
    """What is left to explain, less its mean colour (B, C, H, W), without gradient."""
    r = (state.x - state.recon).detach()
    return r - r.mean((2, 3), keepdim=True)


def peak(r: Tensor, claimed: Tensor) -> Tensor:
    """The flat index (B,) of the pixel where r's energy times what is unclaimed is largest
    averaged over 7 x 7 pixels."""
    energy = F.avg_pool2d(r.pow(2).sum(1, keepdim=True) * (1 - claimed.detach()), 7, 1, 3)
    return energy.flatten(1).argmax(1)


def coordinates(index: Tensor, like: Tensor) -> Tensor:
    """Flat pixel indices (B,) of images like `like` as (x, y) in [-1, 1] (B, 2)."""
    h, w = like.shape[-2:]
    return torch.stack([(index % w).float() / (w - 1), (index // w).float() / (h - 1)], 1) * 2 - 1


def pixel_grid(like: Tensor) -> tuple[Tensor, Tensor]:
    """The (x, y) coordinates in [-1, 1] of the pixels of `like`, (W,) and (H,)."""
    h, w = like.shape[-2:]
    return (torch.linspace(-1, 1, w, device=like.device, dtype=like.dtype),
            torch.linspace(-1, 1, h, device=like.device, dtype=like.dtype))


def squared_distance(centre: Tensor, like: Tensor) -> Tensor:
    """(B, H, W): each pixel's squared distance in pixels from `centre` (B, 2) in [-1, 1]."""
    h, w = like.shape[-2:]
    xs, ys = pixel_grid(like)
    dx = (xs[None, :] - centre[:, :1]) * (w - 1) / 2  # (B, W) pixels
    dy = (ys[None, :] - centre[:, 1:]) * (h - 1) / 2  # (B, H)
    return dy[:, :, None] ** 2 + dx[:, None, :] ** 2


def flat_window(centre: Tensor, radius: Tensor, like: Tensor) -> Tensor:
    """(B, 1, H, W): min(1, 2 exp(-(d / radius)^4)) of each pixel's distance d in pixels from
    `centre` (B, 2) in [-1, 1]; radius (B,) in pixels."""
    d2 = squared_distance(centre, like) / radius[:, None, None] ** 2
    return (2 * torch.exp(-d2 ** 2)).clamp(max=1)[:, None]


@hookimpl
def register_locators(register):
    register("residual_peak", ResidualPeakLocator)
