import os
from pathlib import Path

import pytest

from vle_kit.testing import register_profiles

os.environ["VLE_KIT_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # only the plug-ins a test asks for
register_profiles()

ROOT = Path(__file__).resolve().parent.parent
RECIPES = sorted((ROOT / "recipes").glob("*.toml"))

# A model and data small enough for a CPU test to train in a second.
TINY = ["model.width=16", "model.token.size=4", "model.memory.hidden=8", "data.size=16",
        "data.train=64", "data.test=16", "tokens.min=1", "tokens.max=3", "tokens.weights=[]",
        "train.batch=8", "train.steps=4", "train.warmup=1", "train.log_every=1",
        "train.checkpoint_every=2", "train.grid_images=2"]


@pytest.fixture
def vanilla() -> Path:
    return ROOT / "recipes" / "vanilla.toml"


@pytest.fixture
def image_tree(tmp_path) -> Path:
    """A folder of small PNGs in two class sub-folders, made by the test, not committed."""
    import numpy as np
    from PIL import Image

    root = tmp_path / "images"
    rng = np.random.default_rng(0)
    for cls in ("cats", "dogs"):
        (root / cls).mkdir(parents=True)
        for i in range(6):
            pixels = rng.integers(0, 256, (20 + i, 24, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / cls / f"{i}.png")
    return root


@pytest.fixture
def cifar10_root(tmp_path, monkeypatch) -> Path:
    """CIFAR-10's python layout with 5 + 5 + 5 + 5 + 5 training and 4 test images. The real
    files' checksums cannot match, so torchvision's check of them is skipped."""
    import pickle

    import numpy as np
    from torchvision.datasets import cifar

    folder = tmp_path / "cifar" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, n in [(f"data_batch_{i}", 5) for i in range(1, 6)] + [("test_batch", 4)]:
        batch = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                 "labels": rng.integers(0, 10, n).tolist()}
        (folder / name).write_bytes(pickle.dumps(batch))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": list("abcdefghij")}))
    monkeypatch.setattr(cifar, "check_integrity", lambda path, md5=None: Path(path).is_file())
    return folder.parent


@pytest.fixture
def mnist_root(tmp_path) -> Path:
    """MNIST's raw IDX files with 8 training and 4 test images."""
    import numpy as np

    raw = tmp_path / "mnist" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", 8), ("t10k", 4)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        (raw / f"{split}-images-idx3-ubyte").write_bytes(
            np.array([0x803, n, 28, 28], dtype=">i4").tobytes() + images.tobytes())
        (raw / f"{split}-labels-idx1-ubyte").write_bytes(
            np.array([0x801, n], dtype=">i4").tobytes()
            + rng.integers(0, 10, n, dtype=np.uint8).tobytes())
    return tmp_path / "mnist"


def train_tiny(recipe: str, root: Path, overrides: list[str] = (), plugins=()) -> Path:
    """Train recipes/<recipe>.toml at the TINY size (plus `overrides`, with the plug-in
    objects `plugins` registered) into a new run under `root`; return the run's folder."""
    from vle_kit.plugins import load_registry
    from vle_kit.recipe import apply_overrides, read_toml, validate
    from vle_kit.runs import RunDir
    from vle_kit.train import train

    registry = load_registry(list(plugins))
    table = read_toml(ROOT / "recipes" / f"{recipe}.toml")
    apply_overrides(table, TINY + list(overrides))
    run = RunDir.create(root, "tiny")
    train(validate(table, registry), registry, run)
    return run.path
