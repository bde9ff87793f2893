"""What the data sets read through torchvision share: a local root (never a download), the
class labels, and one message saying where the files go when they are not there."""

from __future__ import annotations

from typing import ClassVar

import attrs
import torch
from torchvision.transforms.v2 import functional as TF

from vle_kit.data import DataConfig, Dataset, ImageSet
from vle_kit.errors import VleKitError


@attrs.frozen(kw_only=True)
class LocalRootConfig(DataConfig):
    root: str  # the folder holding the files in torchvision's layout


class TorchvisionDataset(Dataset):
    """A torchvision data set read from `root` with download=False. Subclasses give its class,
    its name and the layout it expects; the first data.train / data.test images of its own
    train / test splits are used, resized to data.size."""

    Config: ClassVar[type] = LocalRootConfig
    source: ClassVar[type]  # the torchvision class, e.g. torchvision.datasets.MNIST
    name: ClassVar[str]
    layout: ClassVar[str]  # what to put under root, for the message when it is missing

    def load(self, split: str) -> ImageSet:
        cfg = self.cfg
        try:
            data = self.source(cfg.root, train=split == "train", download=False)
        except RuntimeError:  # torchvision's own message offers a download; we never do
            raise VleKitError(f"data.root: no {self.name} in {cfg.root} (missing or "
                              f"corrupt files); nothing is downloaded: put {self.layout} "
                              f"there") from None
        wanted = cfg.train if split == "train" else cfg.test
        if wanted > len(data.data):
            raise VleKitError(f"data.{split}: {self.name}'s {split} split holds "
                              f"{len(data.data)} images, the recipe asks for {wanted}")
        images = torch.as_tensor(data.data[:wanted])
        images = images[:, None] if images.ndim == 3 else images.permute(0, 3, 1, 2)
        if images.shape[-1] != cfg.size:
            images = TF.resize(images, [cfg.size, cfg.size], antialias=True)
        labels = torch.as_tensor(data.targets[:wanted]).long()[:, None]
        return ImageSet(images.contiguous(), None, {"class": labels})
