"""`taken_colour`: a mask should leave the colour an earlier mask took: the third side of
`own_colour` (a mask holds only its core's colour) and `colour_region` (it holds all of it).

A later token that claims what an earlier one left of its object (a cross's arm, a corner)
splits the object in two masks; `own_colour` cannot see it, the split-off piece being of the
later mask's own colour. Here every pixel of the colour of an earlier mask's core (held above
one half, not the ground: `colour_region.cores`) costs what a later mask holds there, so the
piece is left to the last token, which takes the rest and is not priced, and the count of
non-empty masks stays one an object.

The loss is the sum over the masks but the first and the last of what each holds of earlier
masks' colours, averaged over the images' pixels.
"""

import attrs
import torch

from vle_kit import hookimpl
from vle_kit.interfaces import MaskLoss, MaskLossConfig
from vle_kit_plugins.loss_colour_region import cores


@attrs.frozen(kw_only=True)
class TakenColourConfig(MaskLossConfig):
    tolerance: float = attrs.field(default=0.1, validator=attrs.validators.gt(0))
    max_area: float = attrs.field(default=0.2, validator=[attrs.validators.gt(0),
                                                          attrs.validators.le(1)])


class TakenColourLoss(MaskLoss):
    Config = TakenColourConfig

    def forward(self, masks, images):
        m = masks[:, :-1, 0]  # (B, K - 1, H, W) in [0, 1]
        with torch.no_grad():
            _, held, kin = cores(m, images, self.cfg.tolerance, self.cfg.max_area)
            own = (held & kin).float()  # (B, K - 1, HW): each mask's colour, if it has one
            taken = (own.cumsum(1) - own > 0).view_as(m)  # the colours of the masks before
        return (m * taken).sum(1).mean()


@hookimpl
def register_mask_losses(register):
    register("taken_colour", TakenColourLoss)
