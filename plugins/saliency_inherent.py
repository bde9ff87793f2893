"""`inherent`: the decoder emits one extra channel with each part; it becomes the mask."""

from vle_kit import hookimpl
from vle_kit.interfaces import SaliencyHead
from vle_kit.masks import MaskConfig, logits_to_mask


class InherentSaliency(SaliencyHead):
    Config = MaskConfig
    from_tokens = True
    decoder_channels = 1

    def forward(self, state, feat, part, extra):
        return logits_to_mask(extra, state, self.cfg)


@hookimpl
def register_saliency_heads(register):
    register("inherent", InherentSaliency)
