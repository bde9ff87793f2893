"""`sum`: the reconstruction is the sum of all parts; masks, if any, are not used."""

from vle_kit import hookimpl
from vle_kit.interfaces import Combiner


class SumCombiner(Combiner):
    def forward(self, state, part, mask):
        return state.recon + part


@hookimpl
def register_combiners(register):
    register("sum", SumCombiner)
