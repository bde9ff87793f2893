"""`plain`: each token decoded alone into its part, knowing nothing of the earlier tokens: a
convolution and a residual block at the token's resolution, then upsampling to the image."""

import math

from torch import nn

from vle_kit import hookimpl
from vle_kit.interfaces import Decoder
from vle_kit.layers import ResBlock, conv3, up_path


class PlainDecoder(Decoder):
    def __init__(self, cfg, spec):
        super().__init__(cfg, spec)
        up = int(math.log2(spec.image_size // spec.token_size))
        self.net = nn.Sequential(conv3(spec.token_channels, spec.width), ResBlock(spec.width),
                                 up_path(spec.width, up, spec.image_channels + spec.mask_channels))

    def forward(self, z, state, memory):
        return self.net(z), None


@hookimpl
def register_decoders(register):
    register("plain", PlainDecoder)
