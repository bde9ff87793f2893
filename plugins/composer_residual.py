"""`residual`: the encoder sees what is not explained yet, x - recon (notes, Apr 12)."""

from vle_kit import hookimpl
from vle_kit.interfaces import Composer


class ResidualComposer(Composer):
    def forward(self, x, state):
        return x - state.recon


@hookimpl
def register_composers(register):
    register("residual", ResidualComposer)
