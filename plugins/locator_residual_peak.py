"""`residual_peak`: every token but the last looks where the most is left to explain, and may
claim only near there (README, "Mask models": this breaks the recipe's colour slots, so the
tokens take the objects in turn and then fall silent).

The place is chosen without learning: the pixel where the residual x - recon, less its mean
colour, squared and times what no mask has claimed, is largest averaged over `pool` x `pool`
pixels (7); at the first token that is what differs most from the scene's mean colour, usually
an object. With `pass_taken` the peak also passes over every pixel of a colour an earlier
mask already holds (the colour of its core, as the `own_colour` loss finds it): what a token
left of its object is not worth a token of its own, and goes to the last one. In
`inherent.toml` (four seeds): over 5 x 5 pixels a thin object beside a broad one is found
before the broad one's mask takes it, count accuracy 0.788 against 0.774; passing over the
colours taken too, 0.821 (README, "Mask models").
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
from vle_kit_plugins.loss_own_colour import OwnColourConfig, own_colours

WHOLE = 0.91  # a `flat_window` is 1 out to this share of its radius ((ln 2)^(1/4), rounded)
UNDERFLOW = 104.0  # exp(-x) is 0 in float32 from here on
COLOURS = OwnColourConfig()  # how a mask's core colour is found


def _odd(instance, attribute, value):
    if value % 2 == 0:
        raise ValueError(f"must be odd (the pool centred on its pixel), got {value}")


@attrs.frozen(kw_only=True)
class PeakConfig:
    """What every residual locator shares: the side of the square the energy is averaged over,
    and whether the peak passes over the colours earlier masks have taken."""
    pool: int = attrs.field(default=7, validator=[attrs.validators.ge(1), _odd])  # pixels
    pass_taken: bool = False


class ResidualPeakLocator(Locator):
    @attrs.frozen(kw_only=True)
    class Config(PeakConfig):
        radius: float = attrs.field(default=9.0, validator=attrs.validators.gt(0))  # pixels

    extra_channels = 1

    def placed(self, state):
        return state.step < state.k - 1

    def place(self, state):
        place = coordinates(self.peak(state, residual(state)), state.x)
        return place, self.window(place, state.x)  # the encoder sees where its token may claim

    def peak(self, state, r: Tensor) -> Tensor:
        """The flat index (B,) of the peak of residual r (`residual`) at this state."""
        return peak(r, passed(state, self.cfg), self.cfg.pool)

    def radius(self, place: Tensor, like: Tensor) -> Tensor:
        """The window's radius in pixels (B,) for `place`."""
        return torch.full_like(place[:, 0], self.cfg.radius)

    def window(self, place, like):
        if place is None:
            return super().window(place, like)
        return flat_window(place[:, :2], self.radius(place, like), like)


def residual(state) -> Tensor:
    """What is left to explain, less its mean colour (B, C, H, W), without gradient; channels
    first, whatever the images' layout: the locator's sums over the channels of channels-last
    images take four times as long on the CPU."""
    r = (state.x - state.recon).detach()
    return (r - r.mean((2, 3), keepdim=True)).contiguous()


@torch.no_grad()
def passed(state, cfg: PeakConfig) -> Tensor:
    """(B, 1, H, W) in [0, 1]: what the peak passes over: what the masks have claimed and, with
    `pass_taken`, every pixel of an earlier mask's core colour (`own_colour`'s colours, the
    ground's taken by no one). The colours taken so far stay in state.locator_memory, with how
    many masks they hold, so each mask's are found once, not at every later step."""
    if not cfg.pass_taken or not state.masks:
        return state.mask_sum
    taken, seen = state.locator_memory or (torch.zeros_like(state.mask_sum, dtype=torch.bool), 0)
    for mask in state.masks[seen:]:  # (B, 1, H, W): one mask as own_colours' K
        taken = taken | own_colours(mask, state.x, COLOURS).view_as(taken)
    state.locator_memory = taken, len(state.masks)
    return torch.maximum(state.mask_sum, taken.to(state.mask_sum.dtype))


def peak(r: Tensor, claimed: Tensor, pool: int) -> Tensor:
    """The flat index (B,) of the pixel where r's energy times what is unclaimed is largest
    averaged over pool x pool pixels (pool odd)."""
    energy = r.pow(2).sum(1, keepdim=True) * (1 - claimed.detach())
    return F.avg_pool2d(energy, pool, 1, pool // 2).flatten(1).argmax(1)


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
    `centre` (B, 2) in [-1, 1]; radius (B,) in pixels. From 3.2 radii, where the exponential is
    0 in float32, it is not computed: an exponential that underflows took 5-50x as long on a
    Zen 1 CPU, and most of a small window's pixels are that far."""
    d4 = (squared_distance(centre, like) / radius[:, None, None] ** 2) ** 2
    far = d4 >= UNDERFLOW
    return (2 * torch.exp(-d4.masked_fill(far, 0))).masked_fill(far, 0).clamp(max=1)[:, None]


@hookimpl
def register_locators(register):
    register("residual_peak", ResidualPeakLocator)
