"""Real photographs, offline: 32 x 32 patches of the photographs that installed packages ship,
cut into an image folder whose train/ and test/ hold patches of different photographs.

    python -m benchmarks.photos DIR [--size 32] [--stride 12]
    vle-kit run recipes/vanilla.toml --set data.use='image_folder' --set data.root='DIR' \\
        --set data.train=3400 --set data.test=1000

Training photographs: scikit-learn's china, scikit-image's astronaut, coffee, rocket, motorcycle
(left) and Hubble deep field; held-out photographs: scikit-learn's flower, Matplotlib's Grace
Hopper and scikit-image's cat (chelsea). Each photograph is scaled so its short side is 256
pixels, then cut into size x size patches every `stride` pixels. File names say which
photograph a patch came from; there are no class folders (the two splits share no
photograph, so they could share no class).
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

from PIL import Image


def _shipped(module: str, *parts: str) -> Path:
    """A file inside an installed package."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"{module} is not installed (pip install -e '.[dev]' brings it)")
    return Path(next(iter(spec.submodule_search_locations)), *parts)


def photographs() -> dict[str, dict[str, Path]]:
    """split -> photograph name -> file."""
    skimage = lambda name: _shipped("skimage", "data", name)  # noqa: E731
    return {
        "train": {"china": _shipped("sklearn", "datasets", "images", "china.jpg"),
                  "astronaut": skimage("astronaut.png"), "coffee": skimage("coffee.png"),
                  "rocket": skimage("rocket.jpg"), "motorcycle": skimage("motorcycle_left.png"),
                  "hubble": skimage("hubble_deep_field.jpg")},
        "test": {"flower": _shipped("sklearn", "datasets", "images", "flower.jpg"),
                 "grace_hopper": _shipped("matplotlib", "mpl-data", "sample_data",
                                          "grace_hopper.jpg"),
                 "chelsea": skimage("chelsea.png")}}


def write_patches(root: Path, size: int = 32, stride: int = 12, short_side: int = 256) -> dict:
    """Cut every photograph into patches under root/train and root/test; return the count of
    patches per split and photograph."""
    counts: dict[str, dict[str, int]] = {}
    for split, photos in photographs().items():
        folder = root / split
        folder.mkdir(parents=True, exist_ok=True)
        counts[split] = {}
        for name, path in photos.items():
            with Image.open(path) as file:
                photo = file.convert("RGB")
            scale = short_side / min(photo.size)
            photo = photo.resize((round(photo.width * scale), round(photo.height * scale)),
                                 Image.Resampling.LANCZOS)
            n = 0
            for top in range(0, photo.height - size + 1, stride):
                for left in range(0, photo.width - size + 1, stride):
                    photo.crop((left, top, left + size, top + size)).save(
                        folder / f"{name}_{n:05d}.png")
                    n += 1
            counts[split][name] = n
    return counts


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("root", type=Path, help="the folder to write train/ and test/ into")
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--stride", type=int, default=12)
    args = p.parse_args(argv)
    counts = write_patches(args.root, args.size, args.stride)
    for split, per in counts.items():
        print(f"{split}: {sum(per.values())} patches from " +
              ", ".join(f"{name} ({n})" for name, n in per.items()))


if __name__ == "__main__":
    main()
