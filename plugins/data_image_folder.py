"""`image_folder`: any folder of images on disk, resized and centre-cropped to `size`.

Images in sub-folders get the sub-folder as a class label, as torchvision's ImageFolder does.
The split is a fixed shuffle by `seed`: the first `test` images are held out.
"""

from __future__ import annotations

from pathlib import Path

import attrs
import torch

from vle_kit import hookimpl
from vle_kit.errors import VleKitError
from vle_kit.images import image_files, read_images
from vle_kit.data import DataConfig, Dataset, ImageSet, fixed_split


@attrs.frozen(kw_only=True)
class ImageFolderConfig(DataConfig):
    root: str  # the folder to read, searched recursively


class ImageFolderDataset(Dataset):
    Config = ImageFolderConfig

    def files(self, split: str) -> list[Path]:
        root = Path(self.cfg.root)
        if not root.is_dir():
            raise VleKitError(f"data.root: {root} is not a folder")
        files = image_files(root)
        return [files[i] for i in fixed_split(len(files), self.cfg, split, str(root))]

    def load(self, split: str) -> ImageSet:
        files = self.files(split)
        images = read_images(files, self.cfg.size)
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
