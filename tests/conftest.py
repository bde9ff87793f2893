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
        "data.train=64", "data.test=16", "tokens.max=3", "train.batch=8", "train.steps=4",
        "train.warmup=1", "train.log_every=1", "train.checkpoint_every=2", "train.grid_images=2"]


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
