"""`broadcast`: the token read as one vector, copied to every position of a grid at a quarter
of the image's resolution (a half, for a token of half the image's), a learned embedding of
each position's coordinates added, then convolutions up to the image: the spatial broadcast
decoder of MONet, GENESIS and Slot Attention. In `plain` each float of a token draws its own
patch of the image, so one token draws as easily in every patch at once (several objects) as
in one; here every float reaches every pixel and where to draw is learned from the
coordinates, so a token describes a thing wherever it is. Meant for tokens of one position
(`model.token.size = 1`), but it reads any.
"""

import torch
from torch import nn

from vle_kit import hookimpl
from vle_kit.interfaces import Decoder
from vle_kit.layers import Activation, ResBlock, conv3, up_path


class BroadcastDecoder(Decoder):
    def __init__(self, cfg, spec):
        super().__init__(cfg, spec)
        up = min(2, spec.upsamplings)
        grid, width = spec.image_size >> up, spec.width
        self.embed = nn.Linear(spec.token_channels * spec.token_size ** 2, width)
        ramp = torch.linspace(-1, 1, grid)
        y, x = torch.meshgrid(ramp, ramp, indexing="ij")
        self.register_buffer("coords", torch.stack([x, y, -x, -y])[None], persistent=False)
        self.position = nn.Conv2d(4, width, 1)  # Slot Attention's soft position embedding
        self.net = nn.Sequential(Activation(), conv3(width, width), ResBlock(width),
                                 up_path(width, up, spec.decoded_channels,
                                         narrowest=spec.narrowest))

    def forward(self, z, state, memory):
        vector = self.embed(z.flatten(1))[:, :, None, None]
        return self.net(vector + self.position(self.coords)), None


@hookimpl
def register_decoders(register):
    register("broadcast", BroadcastDecoder)
