"""`context`: a decoder that knows what the earlier tokens said, so a later token can refine
what is already drawn instead of describing it again (Toderici et al. 2017's decoders are
recurrent for the same reason). Two sources, each an option:

- `recon`: the reconstruction so far, folded down to the token's resolution by a small
  convolutional encoder and added to the token's features;
- `memory`: a convolutional GRU at the token's resolution that carries the decoder's own state
  from step to step;

and with `whole = true` it draws the whole reconstruction from what it knows (Toderici's
"one-shot" decoding) and returns as the part what that changes, rather than adding a part.

Both follow from the tokens alone, so any prefix still decodes exactly.
"""

import attrs
import torch
from torch import nn

from vle_kit import hookimpl
from vle_kit.interfaces import Decoder
from vle_kit.layers import Activation, ConvGRUCell, ResBlock, conv3, stem, up_path


class ContextDecoder(Decoder):
    @attrs.frozen(kw_only=True)
    class Config:
        recon: bool = True  # see the reconstruction so far
        memory: bool = True  # carry a recurrent state across steps
        whole: bool = False  # draw the whole image; the part is the change

    def __init__(self, cfg, spec):
        super().__init__(cfg, spec)
        width, up = spec.width, spec.upsamplings
        self.embed = conv3(spec.token_channels, width)
        if cfg.recon:  # image -> token resolution: the encoder's stem and one more halving
            self.context = nn.Sequential(
                stem(spec.image_channels, width, up - 1, narrowest=spec.narrowest), Activation(),
                conv3(width, width, 2))
        if cfg.memory:
            self.cell = ConvGRUCell(width, width)
        self.net = nn.Sequential(ResBlock(width),
                                 up_path(width, up, spec.decoded_channels,
                                         narrowest=spec.narrowest))

    def forward(self, z, state, memory):
        h = self.embed(z)
        if self.cfg.recon:
            h = h + self.context(state.recon)
        if self.cfg.memory:
            h = memory = self.cell(h, memory)
        out = self.net(h)
        if self.cfg.whole:
            c = state.recon.shape[1]
            out = torch.cat([out[:, :c] - state.recon, out[:, c:]], 1)
        return out, memory


@hookimpl
def register_decoders(register):
    register("context", ContextDecoder)
