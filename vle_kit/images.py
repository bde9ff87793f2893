"""Image files in and out: read any image PIL can open at a model's size, write PNGs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torchvision.transforms.v2 import functional as TF
from torchvision.utils import save_image

from vle_kit.data import to_unit
from vle_kit.errors import VleKitError

EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}


def image_files(root: Path) -> list[Path]:
    """Every image file under `root`, sorted."""
    return sorted(p for p in Path(root).rglob("*") if p.suffix.lower() in EXTENSIONS)


def as_8_bit(image: Image.Image, channels: int) -> Image.Image:
    """A PIL image as 8-bit RGB (channels = 3) or grey (1): grey and palette images are
    expanded, alpha is dropped, 16- and 32-bit integer images are scaled down to 8 bits."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
        pixels = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or pixels.max() > 255 else 255.0
        image = Image.fromarray((pixels / top * 255).round().clip(0, 255).astype(np.uint8))
    return image.convert("RGB" if channels == 3 else "L")


def read_image(path: Path, size: int, channels: int = 3) -> torch.Tensor:
    """(channels, size, size) uint8: resized on the short side, then centre-cropped."""
    try:
        with Image.open(path) as file:
            image = TF.pil_to_tensor(as_8_bit(file, channels))
    except (OSError, UnidentifiedImageError, ValueError) as e:
        raise VleKitError(f"{path}: not a readable image ({e})") from None
    return TF.center_crop(TF.resize(image, size, antialias=True), [size, size])


def read_images(paths: list[Path], size: int, channels: int = 3) -> torch.Tensor:
    return torch.stack([read_image(p, size, channels) for p in paths]) if paths else \
        torch.empty(0, channels, size, size, dtype=torch.uint8)


def write_image(x: torch.Tensor, path: Path) -> None:
    """Save one image (C, H, W) in [-1, 1] as a PNG."""
    save_image(to_unit(x.cpu()), path)


def write_grid(columns: list[torch.Tensor], path: Path, tile: int = 96) -> None:
    """Save a grid whose rows are images and whose columns are `columns`, each (B, C, H, W)
    in [-1, 1], every image scaled up (nearest neighbour: crisp pixels) to at least `tile`
    pixels a side, so a person sees it without zooming."""
    grid = torch.stack(columns, 1).flatten(0, 1).cpu()
    scale = max(1, -(-tile // grid.shape[-1]))
    grid = torch.nn.functional.interpolate(grid, scale_factor=scale, mode="nearest")
    save_image(to_unit(grid), path, nrow=len(columns), padding=2)
