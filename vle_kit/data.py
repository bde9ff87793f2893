"""Data contracts: a split held in memory, the base class of data-set plug-ins, the options
every data set has, the fixed train/test split, and the pixel conventions.

Images are stored as uint8 in [0, 255] and enter the model as floats in [-1, 1] (notebook,
May 1); image writers take [0, 1]. Masks are (N, K, 1, H, W) everywhere: one channel,
broadcasting against images.
"""

from __future__ import annotations

import functools
import itertools
import math
from typing import ClassVar

import attrs
import numpy as np
import torch
from torch import Tensor

from vle_kit.errors import VleKitError


def to_signed(images: Tensor) -> Tensor:
    """uint8 [0, 255] -> float [-1, 1], the range the model sees."""
    return images.float().div_(127.5).sub_(1)


def square_symmetries(images: Tensor) -> list[Tensor]:
    """The images under each of the 8 symmetries of the square: as they are, flipped left-right,
    up-down, both, and each of those transposed."""
    turned = [images, images.flip(-1), images.flip(-2), images.flip(-1).flip(-2)]
    return turned + [t.transpose(-1, -2) for t in turned]


def channel_orders(images: Tensor) -> list[Tensor]:
    """The images with their colour channels in each order (6 for RGB): hues the training
    images lack are trained on too."""
    return [images[:, list(order)] for order in itertools.permutations(range(images.shape[1]))]


AUGMENTATIONS = {"flips": square_symmetries, "channels": channel_orders}
OWN_AUGMENTATIONS = "data"  # in train.augment: the data set's own (Dataset.augment)


def augment(images: Tensor, names: tuple[str, ...], seed: int,
            places: Tensor | None = None, batch: int | None = None) -> Tensor:
    """Each image under one version of each of AUGMENTATIONS `names` in turn, drawn per image
    from `seed`: more distinct training images for sets as small as a few photographs. The
    draws are made for a whole batch of `batch` images, of which these are at `places`
    (under torchrun each rank holds a share); by default the images are the whole batch."""
    generator = torch.Generator().manual_seed(seed)
    places = torch.arange(images.shape[0]) if places is None else places
    shape = tuple(images.shape[1:])
    version = torch.zeros(batch or images.shape[0], dtype=torch.long)
    for name in names:  # the index into augmented_orders: the names' draws as mixed-radix digits
        count = len(version_orders(shape, (name,)))
        version = version * count + torch.randint(count, version.shape, generator=generator)
    orders = version_orders(shape, names)[version[places]]
    return images.flatten(1).gather(1, orders).view_as(images)


def augmented_orders(shape: tuple[int, ...], names: tuple[str, ...]) -> list[Tensor]:
    """Every combination of AUGMENTATIONS `names` as a reordering of the flattened values of an
    image of `shape` (C, H, W): image.flatten()[order] is that version of it."""
    versions = [torch.arange(math.prod(shape)).view(1, *shape)]
    for name in names:
        versions = [v for u in versions for v in AUGMENTATIONS[name](u)]
    return [v.flatten() for v in versions]


@functools.cache
def version_orders(shape: tuple[int, ...], names: tuple[str, ...]) -> Tensor:
    """augmented_orders as one (versions, C * H * W) tensor, made once per shape: augmenting a
    batch is then one gather, not every version of every image made and all but one dropped."""
    return torch.stack(augmented_orders(shape, names))


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
    augment: ClassVar[tuple[str, ...]] = ()  # what train.augment = ["data"] means for this set

    def __init__(self, cfg):
        self.cfg = cfg

    def load(self, split: str) -> ImageSet:
        raise NotImplementedError
