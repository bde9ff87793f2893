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

from vle_kit import hookimpl
from vle_kit.interfaces import Locator


class ResidualPeakLocator(Locator):
    @attrs.frozen(kw_only=True)
    class Config:
        radius: float = attrs.field(default=9.0, validator=attrs.validators.gt(0))  # pixels

    extra_channels = 1

    def placed(self, state):
        return state.step < state.k - 1

    def place(self, state):
        r = state.x - state.recon
        r = r - r.mean((2, 3), keepdim=True)
        energy = F.avg_pool2d((r.pow(2).sum(1, keepdim=True) * (1 - state.mask_sum)).detach(),
                              7, 1, 3)
        h, w = energy.shape[-2:]
        i = energy.flatten(1).argmax(1)
        return torch.stack([(i % w).float() / (w - 1), (i // w).float() / (h - 1)], 1) * 2 - 1

    def window(self, place, like):
        if place is None:
            return super().window(place, like)
        h, w = like.shape[-2:]
        xs = torch.linspace(-1, 1, w, device=like.device, dtype=like.dtype)
        ys = torch.linspace(-1, 1, h, device=like.device, dtype=like.dtype)
        dx = (xs[None, :] - place[:, :1]) * (w - 1) / 2  # (B, W) pixels
        dy = (ys[None, :] - place[:, 1:]) * (h - 1) / 2  # (B, H)
        d2 = dy[:, :, None] ** 2 + dx[:, None, :] ** 2
        return (2 * torch.exp(-(d2 / self.cfg.radius ** 2) ** 2)).clamp(max=1)[:, None]


@hookimpl
def register_locators(register):
    register("residual_peak", ResidualPeakLocator)
