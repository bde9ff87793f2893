"""`masked_residual`: the encoder sees the image where no mask has claimed it, (1 - sum) * x."""

from vle_kit import hookimpl
from vle_kit.interfaces import Composer


class MaskedResidualComposer(Composer):
    def forward(self, x, state):
        return (1 - state.mask_sum) * x


@hookimpl
def register_composers(register):
    register("masked_residual", MaskedResidualComposer)
