"""Data contracts: a split held in memory, the base class of data-set plug-ins, the options
every data set has, the fixed train/test split, and the pixel conventions.

Images are stored as uint8 in [0, 255] and enter the model as floats in [-1, 1] (notebook,
May 1); image writers take [0, 1]. Masks are (N, K, 1, H, W) everywhere: one channel,
broadcasting against images.
"""

from __future__ import annotations

from typing import ClassVar

import attrs
import numpy as np
from torch import Tensor

from vle_kit.errors import VleKitError


def to_signed(images: Tensor) -> Tensor:
    """uint8 [0, 255] -> float [-1, 1], the range the model sees."""
    return images.float().div_(127.5).sub_(1)


def to_unit(x: Tensor) -> Tensor:
    """float [-1, 1] (values outside are clamped) -> [0, 1], the range image writers take."""
    return (x.clamp(-1, 1) + 1) / 2


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
