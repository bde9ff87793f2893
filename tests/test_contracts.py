"""Every registered name in every slot builds from its defaults and works in the engine."""

import pytest
import torch
from conftest import TINY

from vle_kit.plugins import load_registry
from vle_kit.recipe import load_recipe
from vle_kit.slots import MODEL_SLOTS
from vle_kit.testing.suites import check_model_part

REGISTRY = load_registry()


@pytest.mark.parametrize("slot,name", [(s.name, n) for s in MODEL_SLOTS
                                       for n in REGISTRY.names(s.name)])
def test_model_part_contract(slot, name):
    check_model_part(slot, REGISTRY.get(slot, name).factory)


@pytest.mark.parametrize("name", REGISTRY.names("dataset"))
def test_dataset_contract(vanilla, name, request):
    roots = {"image_folder": "image_tree", "cifar10": "cifar10_root", "mnist": "mnist_root"}
    extra = [f"data.root='{request.getfixturevalue(roots[name])}'"] if name in roots else []
    recipe, registry = load_recipe(vanilla, TINY + [f"data.use='{name}'", "data.train=6",
                                                    "data.test=3", "train.batch=2"] + extra)
    dataset = registry.get("dataset", name).factory(recipe.data.config)
    for split, count in (("train", 6), ("test", 3)):
        images = dataset.load(split)
        assert images.images.dtype == torch.uint8
        n, channels, h, w = images.images.shape
        assert (n, h, w) == (count, 16, 16) and channels in (1, 3)
        if images.objects is not None:
            assert images.objects.shape == (count, 16, 16)
        for labels in images.labels.values():
            assert labels.shape[0] == count
