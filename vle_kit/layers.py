"""Small building blocks shared by the engine and the built-in plug-ins.

Full-resolution layers are the dearest on a CPU (every operation runs over all H x W pixels
with few channels), so the network enters and leaves the image through space-to-depth:
the stem folds 2 x 2 pixel blocks into channels before its first convolution, and the decoders
end with a convolution at half resolution whose channels unfold into 2 x 2 blocks (4 x 4
blocks from a quarter of the resolution, as options: faster, and worse on `inherent`).
"""

from __future__ import annotations

import math

import attrs
import torch
from torch import Tensor, nn

Activation = nn.SiLU  # as good as GELU here and cheaper on CPUs (README, "Speed")


def film_table(rows: int, channels: int) -> nn.Embedding:
    """FiLM parameters for `rows` conditions (steps, or values of K) of `channels` features,
    at zero so that each starts as the identity."""
    table = nn.Embedding(rows, 2 * channels)
    nn.init.zeros_(table.weight)
    return table


def table_row(table: nn.Embedding, index: int) -> Tensor:
    """Row `index` of a conditioning table; past its end, the last row (a step or a K beyond
    what training saw reuses the largest)."""
    return table.weight[min(index, table.num_embeddings - 1)]


def film(h: Tensor, params: Tensor) -> Tensor:
    """FiLM of features h (B, C, H, W) by params (2C,): h * (1 + scale) + shift, so a table
    initialised at zero starts as the identity."""
    scale, shift = params.view(2, 1, -1, 1, 1)
    return h * (1 + scale) + shift


class StepLinear(nn.Module):
    """A learned linear map per step from the whole input (B, ...) flattened to (B, *shape):
    every value of the input reaches every output, which a path of convolutions down to a
    4 x 4 token carries only through its features. Zero at the start, so the map begins
    silent; past the last step the last map is reused."""

    idle_some_steps = True  # the maps of steps past K get no gradient (Trainer.wrapped)

    def __init__(self, steps: int, inputs: int, shape: tuple[int, ...]):
        super().__init__()
        self.shape = shape
        # one parameter a step: each step's gradient then touches only its own matrix
        self.maps = nn.ParameterList(nn.Parameter(torch.zeros(inputs, math.prod(shape)))
                                     for _ in range(steps))

    def forward(self, x: Tensor, step: int) -> Tensor:
        return (x.flatten(1) @ self.maps[min(step, len(self.maps) - 1)]).view(len(x), *self.shape)


def conv3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1)


class ResBlock(nn.Module):
    """x + conv(act(conv(act(x)))): keeps channels and resolution."""

    def __init__(self, channels: int, hidden: int | None = None):
        super().__init__()
        hidden = hidden or channels
        self.net = nn.Sequential(Activation(), conv3(channels, hidden), Activation(),
                                 conv3(hidden, channels))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.net(x)


class Up(nn.Sequential):
    """Doubles the resolution: nearest upsampling, then a 3x3 convolution."""

    def __init__(self, cin: int, cout: int):
        super().__init__(nn.Upsample(scale_factor=2, mode="nearest"), conv3(cin, cout),
                         Activation())


def level_widths(width: int, levels: int, narrowest: int = 32) -> list[int]:
    """Channels at each of `levels` resolutions, finest first: halving per doubling of size,
    never below `narrowest`."""
    return [max(width >> (levels - i), narrowest) for i in range(levels)] + [width]


def stem(in_channels: int, width: int, down: int, fold: int = 2,
         narrowest: int = 32) -> nn.Sequential:
    """Image (B, in, H, W) -> features (B, width, H / 2^down, W / 2^down): a fold x fold
    space-to-depth fold (2 or 4; at most 2^down), a convolution, then stride-2 convolutions
    for the other halvings; `narrowest` channels at least at any resolution."""
    if down == 0:
        return nn.Sequential(conv3(in_channels, width))
    widths = level_widths(width, down - int(math.log2(fold)), narrowest)
    return nn.Sequential(nn.PixelUnshuffle(fold), conv3(fold * fold * in_channels, widths[0]),
                         *[m for a, b in zip(widths[:-1], widths[1:])
                           for m in (Activation(), conv3(a, b, 2))])


def up_path(width: int, up: int, out_channels: int, fine: int = 0, unfold: int = 2,
            hidden: int = 0, narrowest: int = 32) -> nn.Sequential:
    """Features (B, width, s, s) -> (B, out_channels, 2^up s, 2^up s): doublings to 1 / unfold
    of the target resolution, then a convolution whose channels unfold into unfold x unfold
    pixel blocks (2 or 4; at most 2^up), through a hidden layer of `hidden` channels if > 0;
    with `fine` > 0 channels (and unfold 2), the last doubling too, then a convolution at the
    target resolution, so a pixel's value is no longer one of four read from the same
    half-resolution features. `narrowest`: the fewest channels at any resolution."""
    widths = level_widths(width, up - int(math.log2(unfold)), narrowest)[::-1]
    doublings = [Up(a, b) for a, b in zip(widths[:-1], widths[1:])]
    if fine:
        return nn.Sequential(*doublings, Up(widths[-1], fine), conv3(fine, out_channels))
    blocks = unfold * unfold * out_channels
    last = ([conv3(widths[-1], hidden), Activation(), nn.Conv2d(hidden, blocks, 1)] if hidden
            else [conv3(widths[-1], blocks)])
    return nn.Sequential(*doublings, *last, nn.PixelShuffle(unfold))


class ConvGRUCell(nn.Module):
    """A convolutional GRU: h' = (1 - u) h + u tanh(conv([x, r h])), gates u, r from
    conv([x, h]); h starts at zero."""

    def __init__(self, channels: int, hidden: int, kernel: int = 3):
        super().__init__()
        self.hidden = hidden
        self.gates = nn.Conv2d(channels + hidden, 2 * hidden, kernel, padding=kernel // 2)
        self.candidate = nn.Conv2d(channels + hidden, hidden, kernel, padding=kernel // 2)

    def forward(self, x: Tensor, h: Tensor | None) -> Tensor:
        h = x.new_zeros(x.shape[0], self.hidden, *x.shape[2:]) if h is None else h
        update, reset = torch.sigmoid(self.gates(torch.cat([x, h], 1))).chunk(2, 1)
        candidate = torch.tanh(self.candidate(torch.cat([x, reset * h], 1)))
        return (1 - update) * h + update * candidate


@attrs.frozen(kw_only=True)
class ConvCellConfig:
    """Options of a convolutional recurrent cell."""

    hidden: int = attrs.field(default=32, validator=attrs.validators.ge(1))  # state channels
    kernel: int = attrs.field(default=3, validator=attrs.validators.in_((1, 3, 5)))
