"""`image_folder`: any folder of images on disk, resized and centre-cropped to `size`.

Images in sub-folders get the sub-folder as a class label, as torchvision's ImageFolder does.
The split is a fixed shuffle by `seed`: the first `test` images are held out.
"""

from __future__ import annotations

from pathlib import Path

import attrs
import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torchvision.transforms.v2 import functional as TF

from vle_kit import hookimpl
from vle_kit.errors import VleKitError
from vle_kit.interfaces import DataConfig, Dataset, ImageSet

EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}


@attrs.frozen(kw_only=True)
class ImageFolderConfig(DataConfig):
    root: str  # the folder to read, searched recursively


class ImageFolderDataset(Dataset):
    Config = ImageFolderConfig

    def files(self) -> list[Path]:
        root = Path(self.cfg.root)
        if not root.is_dir():
            raise VleKitError(f"data.root: {root} is not a folder")
        files = sorted(p for p in root.rglob("*") if p.suffix.lower() in EXTENSIONS)
        wanted = self.cfg.train + self.cfg.test
        if len(files) < wanted:
            raise VleKitError(f"data.root: {root} holds {len(files)} images, the recipe asks for "
                              f"data.train + data.test = {wanted}")
        order = np.random.default_rng(self.cfg.seed).permutation(len(files))
        return [files[i] for i in order[:wanted]]

    def load(self, split: str) -> ImageSet:
        files = self.files()
        files = files[:self.cfg.test] if split == "test" else files[self.cfg.test:]
        size = self.cfg.size
        images = torch.empty(len(files), 3, size, size, dtype=torch.uint8)
        for i, path in enumerate(files):
            try:
                with Image.open(path) as file:
                    image = TF.pil_to_tensor(file.convert("RGB"))
            except (OSError, UnidentifiedImageError) as e:
                raise VleKitError(f"{path}: not a readable image ({e})") from None
            images[i] = TF.center_crop(TF.resize(image, size, antialias=True), [size, size])
        root = Path(self.cfg.root)
        classes = sorted({p.relative_to(root).parts[0] for p in files if p.parent != root})
        labels = {}
        if classes:
            index = {c: i for i, c in enumerate(classes)}
            labels["class"] = torch.tensor([[index.get(p.relative_to(root).parts[0], -1)]
                                            for p in files])
        return ImageSet(images, None, labels)


@hookimpl
def register_datasets(register):
    register("image_folder", ImageFolderDataset)
