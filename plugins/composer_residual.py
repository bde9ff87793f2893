"""`residual`: the encoder sees what is not explained yet, x - recon (notes, Apr 12).

With `detach = true` no gradient flows back through the reconstruction the encoder sees: each
token is trained to explain the residual it is given, not to shape the residuals of the
tokens after it.
"""

import attrs

from vle_kit import hookimpl
from vle_kit.interfaces import Composer


class ResidualComposer(Composer):
    @attrs.frozen(kw_only=True)
    class Config:
        detach: bool = False

    def forward(self, x, state):
        return x - (state.recon.detach() if self.cfg.detach else state.recon)


@hookimpl
def register_composers(register):
    register("residual", ResidualComposer)
