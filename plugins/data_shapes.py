"""`shapes`: procedural scenes of 2-6 coloured shapes, with object ids and labels.

Image i of a split is drawn from its own generator seeded by (seed, split, i), so the data set
is the same on every machine and nothing is stored or downloaded. Objects are painted in a
random depth order; each stays at least `min_visible` pixels visible.
"""

from __future__ import annotations

import attrs
import numpy as np
import torch

from vle_kit import hookimpl
from vle_kit.data import DataConfig, Dataset, ImageSet

SHAPES = ("square", "ellipse", "triangle", "cross")
COLOURS = np.array([  # label i is COLOURS[i]
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200),
    (245, 130, 48), (145, 30, 180), (70, 240, 240), (240, 50, 230)], dtype=np.uint8)
BACKGROUNDS = np.array([(20, 20, 20), (60, 60, 60), (25, 35, 70), (70, 45, 30)], dtype=np.uint8)


@attrs.frozen(kw_only=True)
class ShapesConfig(DataConfig):
    min_objects: int = attrs.field(default=2, validator=attrs.validators.ge(1))
    max_objects: int = attrs.field(default=6, validator=attrs.validators.le(len(COLOURS)))
    min_visible: float = attrs.field(default=0.006, validator=attrs.validators.ge(0))  # of pixels

    @max_objects.validator
    def _max_at_least_min(self, attribute, value):
        if value < self.min_objects:
            raise ValueError(f"must be >= min_objects ({self.min_objects}), got {value}")


def _inside(shape: int, u: np.ndarray, v: np.ndarray, r: float, aspect: float) -> np.ndarray:
    """Which points (u, v), in the object's rotated frame, lie inside it."""
    if shape == 0:
        return np.maximum(abs(u), abs(v)) <= 0.8 * r
    if shape == 1:
        return (u / r) ** 2 + (v / (r * aspect)) ** 2 <= 1
    if shape == 2:
        angles = np.pi / 2 + 2 * np.pi * np.arange(3) / 3
        return np.all(np.cos(angles)[:, None, None] * u + np.sin(angles)[:, None, None] * v
                      <= r / 2, axis=0)
    arm = r / 3
    return ((abs(u) <= arm) & (abs(v) <= r)) | ((abs(v) <= arm) & (abs(u) <= r))


def draw_scene(rng: np.random.Generator, size: int, cfg: ShapesConfig):
    """One scene: image (size, size, 3) uint8, object ids (size, size), shape and colour labels."""
    n = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
    ys, xs = np.mgrid[0:size, 0:size] + 0.5
    while True:
        shapes = rng.integers(0, len(SHAPES), n)
        colours = rng.choice(len(COLOURS), n, replace=False)
        radii = rng.uniform(0.12, 0.22, n) * size
        objects = np.zeros((size, size), dtype=np.int64)
        for i in range(n):
            cx, cy = rng.uniform(radii[i], size - radii[i], 2)
            angle = rng.uniform(0, 2 * np.pi)
            du, dv = xs - cx, ys - cy
            u = np.cos(angle) * du + np.sin(angle) * dv
            v = -np.sin(angle) * du + np.cos(angle) * dv
            objects[_inside(int(shapes[i]), u, v, radii[i], rng.uniform(0.6, 1.0))] = i + 1
        visible = np.bincount(objects.ravel(), minlength=n + 1)[1:]
        if visible.min() >= max(cfg.min_visible * size * size, 1):
            break
    palette = np.concatenate([BACKGROUNDS[rng.integers(len(BACKGROUNDS))][None], COLOURS[colours]])
    return palette[objects], objects, shapes, colours


class ShapesDataset(Dataset):
    Config = ShapesConfig
    augment = ("flips",)  # not "channels": the colours come from a fixed palette

    def load(self, split: str) -> ImageSet:
        cfg = self.cfg
        count = cfg.train if split == "train" else cfg.test
        split_id = 0 if split == "train" else 1
        images = np.empty((count, cfg.size, cfg.size, 3), dtype=np.uint8)
        objects = np.empty((count, cfg.size, cfg.size), dtype=np.int64)
        shapes = np.full((count, cfg.max_objects), -1, dtype=np.int64)
        colours = np.full((count, cfg.max_objects), -1, dtype=np.int64)
        for i in range(count):
            rng = np.random.default_rng([cfg.seed, split_id, i])
            images[i], objects[i], s, c = draw_scene(rng, cfg.size, cfg)
            shapes[i, :len(s)], colours[i, :len(c)] = s, c
        return ImageSet(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(),
                        torch.from_numpy(objects),
                        {"shape": torch.from_numpy(shapes), "colour": torch.from_numpy(colours)})


@hookimpl
def register_datasets(register):
    register("shapes", ShapesDataset)
