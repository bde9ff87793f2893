"""Small building blocks shared by the engine and the built-in plug-ins."""

from __future__ import annotations

import attrs
from torch import Tensor, nn


def conv3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1)


class ResBlock(nn.Module):
    """x + conv(gelu(conv(gelu(x)))): keeps channels and resolution."""

    def __init__(self, channels: int, hidden: int | None = None):
        super().__init__()
        hidden = hidden or channels
        self.net = nn.Sequential(nn.GELU(), conv3(channels, hidden), nn.GELU(),
                                 conv3(hidden, channels))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.net(x)


class Up(nn.Sequential):
    """Doubles the resolution: nearest upsampling, then a 3x3 convolution."""

    def __init__(self, cin: int, cout: int):
        super().__init__(nn.Upsample(scale_factor=2, mode="nearest"), conv3(cin, cout), nn.GELU())


def level_widths(width: int, levels: int, smallest: int = 32) -> list[int]:
    """Channels at each of `levels` resolutions, finest first: halving per doubling of size."""
    return [max(width >> (levels - i), smallest) for i in range(levels)] + [width]


@attrs.frozen(kw_only=True)
class ConvCellConfig:
    """Options of a convolutional recurrent cell."""

    hidden: int = attrs.field(default=32, validator=attrs.validators.ge(1))  # state channels
    kernel: int = attrs.field(default=3, validator=attrs.validators.in_((1, 3, 5)))
