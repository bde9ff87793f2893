"""`paint`: the first token draws the whole image; each later one paints its part over the
reconstruction where its mask is (a painter's algorithm: a coarse first token, later ones
refining regions):

    recon_1 = part_1,    recon_t = (1 - mask_t) * recon_{t-1} + mask_t * part_t

A part need only be right under its mask, so a token carries its region and not the rest of
the scene, and a token with nothing left to explain can paint nothing. A mask holds what it
painted and what no later mask painted over: the masks always partition the image, the first
token's holding what no other took (the background, once the objects are painted). With
`over = "first"` a token paints only over what the first token still holds, so no token
repaints part of an object an earlier one drew. The saliency head must not scope its masks
(`scope = false`). Without a saliency head it is `sum`.
"""

import attrs
import torch

from vle_kit import hookimpl
from vle_kit.interfaces import Combiner


class PaintCombiner(Combiner):
    @attrs.frozen(kw_only=True)
    class Config:
        over: str = attrs.field(default="all", validator=attrs.validators.in_(("all", "first")))

    paints_over = True

    def forward(self, state, part, mask):
        if mask is None:
            return state.recon + part
        if state.step == 0:
            return part
        mask = self.painted(state, mask)
        return state.recon + mask * (part - state.recon)

    def claim(self, state, mask):
        mask = torch.ones_like(mask) if state.step == 0 else self.painted(state, mask)
        state.masks = [m * (1 - mask) for m in state.masks] + [mask]
        state.mask_sum = torch.ones_like(mask)

    def painted(self, state, mask):
        """Where a later token's part replaces the reconstruction, and how much."""
        return mask if self.cfg.over == "all" else mask * state.masks[0]


@hookimpl
def register_combiners(register):
    register("paint", PaintCombiner)
