"""`own_colour`: a mask should hold only pixels of its core's colour: the other half of
`colour_region`, which pushes a mask to take its colour's region and prices nothing it holds.

Each mask's core is the pixel where its 3 x 3 erosion is largest (`colour_region`'s); every
pixel the mask holds that is not of the core's colour (squared distance over the channels
within `tolerance`, images in [-1, 1]) costs what the mask holds there. So does all of a mask
whose core is the ground's colour (over `max_area` of the image) or which holds no core above
one half: a token past the objects is pushed to fall silent. Unlike `piecewise_constant`,
every other-coloured pixel costs the same, however near its colour, so the sliver of an object
seen past the one in front costs the token that takes it as much as the ground would, and the
price does not fall as the mask's mean colour moves towards the sliver's. The last mask is not
priced: with `scope` (the default) it takes what every earlier mask left, the ground with it,
and its price would push the earlier masks to take other objects' pixels.

The loss is the sum over the masks but the last of what each holds outside its colour,
averaged over the images' pixels. With `log` a held pixel costs -log(1 - m), the cross-entropy
towards leaving it, not m: the price of m has no gradient left once the mask's tanh saturates
(most of a trained mask's pixels are 1 in float32), this one does, with the saliency head's
`bound` keeping masks below 1 (`taken_colour` shares the option).

Added to `placed.toml` at 15, seeds 0-3: FG-ARI 0.826 against 0.816 (better in every seed),
merges 0.130 against 0.142, every prefix from the fourth on nearer PCA; at 30 the first prefix
1.58x PCA, at 100 tokens became slots for colours. The recipe now prices it in log space at 5
(README, "Mask models").
"""

import attrs
import torch

from vle_kit import hookimpl
from vle_kit.interfaces import MaskLoss, MaskLossConfig
from vle_kit_plugins.loss_colour_region import cores


@attrs.frozen(kw_only=True)
class OwnColourConfig(MaskLossConfig):
    tolerance: float = attrs.field(default=0.1, validator=attrs.validators.gt(0))
    max_area: float = attrs.field(default=0.2, validator=[attrs.validators.gt(0),
                                                          attrs.validators.le(1)])
    log: bool = False  # price -log(1 - m), not m: reaches saturated masks (with `bound`)


def held_price(masks: torch.Tensor, log: bool) -> torch.Tensor:
    """What holding each pixel costs: the mask value, or with `log` the cross-entropy towards
    an empty mask, whose gradient through the tanh does not vanish as the mask nears 1 (with
    the saliency head's `bound`; without it a mask at 1 costs 14 and moves nothing)."""
    return -torch.log1p(-masks.clamp(max=1 - 1e-6)) if log else masks


def own_colours(masks: torch.Tensor, images: torch.Tensor,
                cfg: OwnColourConfig) -> torch.Tensor:
    """(B, K, H, W) masks, (B, C, H, W) images -> (B, K, HW) bool: the pixels of each mask's
    core colour; none for a mask whose core is the ground's colour or held at half or less."""
    _, held, kin = cores(masks, images, cfg.tolerance, cfg.max_area)
    return held & kin


class OwnColourLoss(MaskLoss):
    Config = OwnColourConfig

    def forward(self, masks, images):
        m = masks[:, :-1, 0]  # (B, K - 1, H, W) in [0, 1]
        with torch.no_grad():
            own = own_colours(m, images, self.cfg).view_as(m)
        return (held_price(m, self.cfg.log) * ~own).sum(1).mean()


@hookimpl
def register_mask_losses(register):
    register("own_colour", OwnColourLoss)
