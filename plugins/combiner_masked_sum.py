"""`masked_sum`: each part counts only where its mask is: recon + mask * part (without a
saliency head, everywhere)."""

from vle_kit import hookimpl
from vle_kit.interfaces import Combiner


class MaskedSumCombiner(Combiner):
    def forward(self, state, part, mask):
        return state.recon + (part if mask is None else mask * part)


@hookimpl
def register_combiners(register):
    register("masked_sum", MaskedSumCombiner)
