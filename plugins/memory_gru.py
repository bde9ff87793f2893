"""`gru`: a convolutional GRU cell after the stem; fewer gates than `convlstm`."""

from torch import nn

from vle_kit import hookimpl
from vle_kit.interfaces import Memory
from vle_kit.layers import ConvCellConfig, ConvGRUCell


class ConvGRUMemory(Memory):
    Config = ConvCellConfig

    def __init__(self, cfg, spec):
        super().__init__(cfg, spec)
        self.cell = ConvGRUCell(spec.width, cfg.hidden, cfg.kernel)
        self.out = nn.Conv2d(cfg.hidden, spec.width, 1)

    def forward(self, feat, memory):
        h = self.cell(feat, memory)
        return feat + self.out(h), h


@hookimpl
def register_memories(register):
    register("gru", ConvGRUMemory)
