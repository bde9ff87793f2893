"""`digits`: scikit-learn's bundled handwritten digits (1797 grey 8 x 8 images, classes 0-9),
scaled up to `size`; read from the installed package, nothing downloaded."""

from __future__ import annotations

import attrs
import torch
from sklearn.datasets import load_digits
from torchvision.transforms.v2 import functional as TF

from vle_kit import hookimpl
from vle_kit.data import DataConfig, Dataset, ImageSet, fixed_split


@attrs.frozen(kw_only=True)
class DigitsConfig(DataConfig):
    train: int = attrs.field(default=1297, validator=attrs.validators.ge(1))
    test: int = attrs.field(default=500, validator=attrs.validators.ge(1))


class DigitsDataset(Dataset):
    Config = DigitsConfig

    def load(self, split: str) -> ImageSet:
        digits = load_digits()
        keep = fixed_split(len(digits.images), self.cfg, split, "scikit-learn's digits")
        images = torch.from_numpy(digits.images[keep] * (255 / 16)).float()[:, None]
        images = TF.resize(images, [self.cfg.size] * 2, antialias=True)
        labels = torch.from_numpy(digits.target[keep]).long()[:, None]
        return ImageSet(images.round().clamp(0, 255).to(torch.uint8), None, {"class": labels})


@hookimpl
def register_datasets(register):
    register("digits", DigitsDataset)
