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
from vle_kit.masks import fill_unclaimed


class MaskedFillCombiner(Combiner):
    def forward(self, state, part, mask):
        return state.recon + part if mask is None else fill_unclaimed(state, part)


@hookimpl
def register_combiners(register):
    register("masked_fill", MaskedFillCombiner)
