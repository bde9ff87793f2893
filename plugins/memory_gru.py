"""`gru`: a convolutional GRU cell after the stem; fewer gates than `convlstm`."""

import torch
from torch import nn

from vle_kit import hookimpl
from vle_kit.interfaces import Memory
from vle_kit.layers import ConvCellConfig


class ConvGRUMemory(Memory):
    Config = ConvCellConfig

    def __init__(self, cfg, spec):
        super().__init__(cfg, spec)
        pad = cfg.kernel // 2
        self.gates = nn.Conv2d(spec.width + cfg.hidden, 2 * cfg.hidden, cfg.kernel, padding=pad)
        self.candidate = nn.Conv2d(spec.width + cfg.hidden, cfg.hidden, cfg.kernel, padding=pad)
        self.out = nn.Conv2d(cfg.hidden, spec.width, 1)

    def forward(self, feat, memory):
        h = feat.new_zeros(feat.shape[0], self.cfg.hidden, *feat.shape[2:]) if memory is None \
            else memory
        update, reset = torch.sigmoid(self.gates(torch.cat([feat, h], 1))).chunk(2, 1)
        candidate = torch.tanh(self.candidate(torch.cat([feat, reset * h], 1)))
        h = (1 - update) * h + update * candidate
        return feat + self.out(h), h


@hookimpl
def register_memories(register):
    register("gru", ConvGRUMemory)
