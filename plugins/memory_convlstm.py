"""`convlstm`: a ConvLSTM cell right after the stem (notes, Apr 14 and May 1).

The encoder remembers what earlier tokens already said, so each step can say something new.
"""

import torch
from torch import nn

from vle_kit import hookimpl
from vle_kit.interfaces import Memory
from vle_kit.layers import ConvCellConfig


class ConvLSTMMemory(Memory):
    Config = ConvCellConfig

    def __init__(self, cfg, spec):
        super().__init__(cfg, spec)
        self.gates = nn.Conv2d(spec.width + cfg.hidden, 4 * cfg.hidden, cfg.kernel,
                               padding=cfg.kernel // 2)
        self.out = nn.Conv2d(cfg.hidden, spec.width, 1)

    def forward(self, feat, memory):
        if memory is None:
            zeros = feat.new_zeros(feat.shape[0], self.cfg.hidden, *feat.shape[2:])
            memory = (zeros, zeros)
        h, c = memory
        i, f, o, g = self.gates(torch.cat([feat, h], 1)).chunk(4, 1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return feat + self.out(h), (h, c)


@hookimpl
def register_memories(register):
    register("convlstm", ConvLSTMMemory)
