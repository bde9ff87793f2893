"""`constructor`: a residual block merges the masked part with the running total (notes,
Apr 29), so parts can be blended where they meet instead of only added. With `fill` the newest part
also fills what no mask has claimed yet, as in `masked_fill`, so every prefix is a whole image."""

import attrs
import torch
from torch import nn

from vle_kit import hookimpl
from vle_kit.interfaces import Combiner
from vle_kit.layers import conv3
from vle_kit.masks import fill_unclaimed


class ConstructorCombiner(Combiner):
    @attrs.frozen(kw_only=True)
    class Config:
        hidden: int = attrs.field(default=16, validator=attrs.validators.ge(1))
        fill: bool = False  # the newest part fills the unclaimed rest: prefixes decode

    def __init__(self, cfg, spec):
        super().__init__(cfg, spec)
        c = spec.image_channels
        self.merge = nn.Sequential(conv3(2 * c + 1, cfg.hidden), nn.GELU(), conv3(cfg.hidden, c))
        nn.init.zeros_(self.merge[-1].weight)
        nn.init.zeros_(self.merge[-1].bias)

    def forward(self, state, part, mask):
        filling = self.cfg.fill and mask is not None
        mask = part.new_ones(part[:, :1].shape) if mask is None else mask
        added = fill_unclaimed(state, part) if filling else state.recon + mask * part
        return added + self.merge(torch.cat([state.recon, mask * part, mask], 1))


@hookimpl
def register_combiners(register):
    register("constructor", ConstructorCombiner)
