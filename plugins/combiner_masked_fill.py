"""`masked_fill`: each part counts where its mask is, and the newest part also fills what no
mask has claimed yet, so every prefix of tokens decodes to a whole image (the first token
draws the whole scene coarsely) instead of the claimed regions on black:

    recon_t = sum_{s < t} mask_s * part_s + (1 - sum_{s < t} mask_s) * part_t

A mask decides how much of its part stays once later tokens arrive. With `scope`, the last of
K tokens takes the rest, so after K tokens this is `masked_sum`'s reconstruction. Without a
saliency head it is `sum`.
"""

from vle_kit import hookimpl
from vle_kit.interfaces import Combiner


class MaskedFillCombiner(Combiner):
    def forward(self, state, part, mask):
        if mask is None:
            return state.recon + part
        rest = 1 - state.mask_sum  # what the masks before this token left unclaimed
        claimed = state.recon - rest * state.parts[-1] if state.parts else 0
        return claimed + rest * part


@hookimpl
def register_combiners(register):
    register("masked_fill", MaskedFillCombiner)
