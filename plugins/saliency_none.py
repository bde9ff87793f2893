"""`none`: no saliency head; tokens carry no masks (the vanilla VLE)."""

from vle_kit import hookimpl
from vle_kit.interfaces import SaliencyHead


class NoSaliency(SaliencyHead):
    from_tokens = True
    makes_masks = False

    def forward(self, state, feat, part, extra):
        return None


@hookimpl
def register_saliency_heads(register):
    register("none", NoSaliency)
