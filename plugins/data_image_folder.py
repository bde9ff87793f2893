"""`image_folder`: any folder of images on disk, resized on the short side and centre-cropped
to `size`.

When `root` holds `train/` and `test/` (or `val/`) sub-folders, they are the splits, as in
ImageNet's and torchvision's layout, so images cut from one photograph stay on one side;
classes are the folders below them. Otherwise the images under `root` are split by a fixed
shuffle by `seed` (the first `test` are held out) and classes are the folders under `root`.
`train` and `test` take that many images of each split (a fixed shuffle of the split when it
holds more). Conversions: grey, palette and RGBA images become RGB (alpha is dropped), 16-bit
images are scaled to 8 bits.
"""

from __future__ import annotations

from pathlib import Path

import attrs
import numpy as np
import torch

from vle_kit import hookimpl
from vle_kit.data import DataConfig, Dataset, ImageSet, fixed_split
from vle_kit.errors import VleKitError
from vle_kit.images import EXTENSIONS, image_files, read_images

HELD_OUT = ("test", "val")  # sub-folder names taken as the held-out split, in this order


@attrs.frozen(kw_only=True)
class ImageFolderConfig(DataConfig):
    root: str  # the folder to read, searched recursively


class ImageFolderDataset(Dataset):
    Config = ImageFolderConfig
    augment = ("flips", "channels")  # a few photographs lack hues the held-out ones have

    def split_folders(self) -> dict[str, Path] | None:
        """{"train": root/train, "test": root/test or root/val} when root has them."""
        root = Path(self.cfg.root)
        held_out = next((root / n for n in HELD_OUT if (root / n).is_dir()), None)
        if (root / "train").is_dir() and held_out is not None:
            return {"train": root / "train", "test": held_out}
        return None

    def files(self, split: str) -> tuple[list[Path], Path]:
        """The image files of `split` and the folder their classes are read under."""
        root = Path(self.cfg.root)
        if not root.is_dir():
            raise VleKitError(f"data.root: {root} is not a folder")
        folders = self.split_folders()
        base = root if folders is None else folders[split]
        files = image_files(base)
        if not files:
            raise VleKitError(f"data.root: {base} holds no image files "
                              f"({', '.join(sorted(EXTENSIONS))})")
        if folders is None:
            return [files[i] for i in fixed_split(len(files), self.cfg, split, str(root))], base
        wanted = self.cfg.train if split == "train" else self.cfg.test
        if wanted > len(files):
            raise VleKitError(f"data.{split}: {base} holds {len(files)} images, the recipe asks "
                              f"for {wanted}")
        order = np.random.default_rng(self.cfg.seed).permutation(len(files))[:wanted]
        return [files[i] for i in sorted(order)], base

    def load(self, split: str) -> ImageSet:
        files, base = self.files(split)
        images = read_images(files, self.cfg.size)
        classes = sorted({p.relative_to(base).parts[0] for p in files if p.parent != base})
        labels = {}
        if classes:
            index = {c: i for i, c in enumerate(classes)}
            labels["class"] = torch.tensor([[index.get(p.relative_to(base).parts[0], -1)]
                                            for p in files])
        return ImageSet(images, None, labels)


@hookimpl
def register_datasets(register):
    register("image_folder", ImageFolderDataset)
