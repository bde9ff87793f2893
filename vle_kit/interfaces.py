"""The base classes a plug-in subclasses, one per slot, and the state the engine hands them.

Each plug-in class keeps its recipe options in an inner attrs class called `Config`; the
recipe's table for the slot is checked against it. Model parts are built as `Cls(cfg, spec)`.
"""

from __future__ import annotations

from typing import ClassVar

import attrs
import numpy as np
import torch
from torch import Tensor, nn

from vle_kit.errors import VleKitError


@attrs.frozen
class NoOptions:
    """The Config of a plug-in that takes no options."""


@attrs.frozen
class ModelSpec:
    """What every model part may need to know about the model it is built into."""

    image_channels: int  # C of the images
    width: int  # feature channels of the encoder where memory and saliency see them
    tokens_max: int  # the largest number of tokens the model is asked for


@attrs.define(eq=False)
class State:
    """What the loop knows before step `step` (0-based) of `k` requested steps."""

    x: Tensor  # (B, C, H, W) the input, in [-1, 1]
    k: int
    step: int
    recon: Tensor  # (B, C, H, W) the reconstruction so far
    mask_sum: Tensor  # (B, 1, H, W) in [0, 1]: how much of each pixel the masks have claimed
    masks: list[Tensor]  # the masks so far, each (B, 1, H, W)
    progress: float = 1.0  # share of training done, for annealed plug-ins; 1 outside training

    @classmethod
    def start(cls, x: Tensor, k: int, progress: float = 1.0) -> State:
        b, _, h, w = x.shape
        return cls(x, k, 0, torch.zeros_like(x), x.new_zeros(b, 1, h, w), [], progress)


class ModelPart(nn.Module):
    """What every model plug-in shares: built as `Cls(cfg, spec)`, options in `Config`."""

    Config: ClassVar[type] = NoOptions

    def __init__(self, cfg, spec: ModelSpec):
        super().__init__()
        self.cfg = cfg


class Composer(ModelPart):
    """Builds the encoder's input at a step from the image and the state."""

    def __init__(self, cfg, spec: ModelSpec):
        super().__init__(cfg, spec)
        self.out_channels = spec.image_channels  # set more for a composer that adds planes

    def forward(self, x: Tensor, state: State) -> Tensor:
        raise NotImplementedError


class Memory(ModelPart):
    """Carries state across steps; sees the stem's features (B, width, h, w)."""

    def forward(self, feat: Tensor, memory: object | None) -> tuple[Tensor, object | None]:
        """Return the features for the encoder body and the memory for the next step."""
        raise NotImplementedError


class SaliencyHead(ModelPart):
    """Produces the mask (B, 1, H, W) of the part a token explains, or None."""

    decoder_channels: int = 0  # extra channels the decoder emits for this head
    from_tokens: bool = False  # True if the mask follows from the decoder's output alone, so
    #                            saved tokens decode without the image (see VLE.decode)

    def forward(self, state: State, feat: Tensor, part: Tensor, extra: Tensor) -> Tensor | None:
        raise NotImplementedError


class Combiner(ModelPart):
    """Joins a new part (B, C, H, W) and its mask (or None) to the running reconstruction."""

    def forward(self, state: State, part: Tensor, mask: Tensor | None) -> Tensor:
        raise NotImplementedError


@attrs.frozen(kw_only=True)
class MaskLossConfig:
    """Options every mask loss has: its weight in the total loss and a linear warm-up."""

    weight: float = attrs.field(default=1.0, validator=attrs.validators.ge(0))
    warmup: int = attrs.field(default=0, validator=attrs.validators.ge(0))  # steps to full weight


class MaskLoss(nn.Module):
    """A penalty on the stack of masks (B, K, 1, H, W), which may look at the images
    (B, C, H, W) in [-1, 1] the masks were made for; returns a scalar."""

    Config: ClassVar[type] = MaskLossConfig

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg

    def forward(self, masks: Tensor, images: Tensor) -> Tensor:
        raise NotImplementedError


@attrs.frozen(kw_only=True)
class DataConfig:
    """Options every data set has."""

    size: int = attrs.field(default=32, validator=attrs.validators.ge(8))  # images are size x size
    train: int = attrs.field(default=20000, validator=attrs.validators.ge(1))  # training images
    test: int = attrs.field(default=1000, validator=attrs.validators.ge(1))  # held-out images
    seed: int = attrs.field(default=0, validator=attrs.validators.ge(0))  # not train.seed


@attrs.frozen
class ImageSet:
    """A split held in memory: uint8 images and, where known, object ids and labels."""

    images: Tensor  # (N, C, H, W) uint8
    objects: Tensor | None = None  # (N, H, W) int64, 0 = background, i = i-th object
    labels: dict[str, Tensor] = attrs.field(factory=dict)  # name -> (N, max_objects), -1 = none

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, rows: slice) -> ImageSet:
        """The images of `rows`, with their objects and labels."""
        return ImageSet(self.images[rows], None if self.objects is None else self.objects[rows],
                        {name: labels[rows] for name, labels in self.labels.items()})

    def with_channels(self, channels: int) -> ImageSet:
        """The same set with `channels` channels: grey images are repeated into colour ones."""
        have = self.images.shape[1]
        if have == channels:
            return self
        if have != 1:
            raise VleKitError(f"the data has {have} channels per image, the model takes "
                              f"{channels}")
        return attrs.evolve(self, images=self.images.expand(-1, channels, -1, -1).contiguous())


def fixed_split(total: int, cfg: DataConfig, split: str, what: str) -> np.ndarray:
    """Indices of `split` among `total` items: a fixed shuffle by cfg.seed, whose first
    cfg.test items are held out and the next cfg.train trained on."""
    if cfg.train + cfg.test > total:
        raise VleKitError(f"data: {what} holds {total} images, the recipe asks for data.train + "
                          f"data.test = {cfg.train + cfg.test}")
    order = np.random.default_rng(cfg.seed).permutation(total)
    return order[:cfg.test] if split == "test" else order[cfg.test:cfg.test + cfg.train]


class Dataset:
    """Loads the `train` or `test` split of a data set as an ImageSet."""

    Config: ClassVar[type] = DataConfig

    def __init__(self, cfg):
        self.cfg = cfg

    def load(self, split: str) -> ImageSet:
        raise NotImplementedError
