"""Every registered name in every slot builds from its defaults and works in the engine."""

import pytest
import torch

from vle_kit.plugins import load_registry
from vle_kit.recipe import load_recipe
from vle_kit.train import build_model

from conftest import TINY

REGISTRY = load_registry()
MODEL_SLOTS = ("composer", "memory", "saliency", "combiner")


@pytest.mark.parametrize("slot,name", [(s, n) for s in MODEL_SLOTS for n in REGISTRY.names(s)])
def test_model_part_contract(vanilla, slot, name):
    recipe, registry = load_recipe(vanilla, TINY + [f"model.{slot}={{use = '{name}'}}"])
    model = build_model(recipe, registry)
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    for k in (1, recipe.tokens.max):
        out = model(x, k)
        assert out.tokens.shape == (2, k, 4, 4, 4)
        assert out.parts.shape == out.recons.shape == (2, k, 3, 16, 16)
        assert out.masks is None or out.masks.shape == (2, k, 1, 16, 16)
        assert torch.isfinite(out.recons).all()
    model.zero_grad()
    loss = out.recons.pow(2).mean() + (0 if out.masks is None else out.masks.mean())
    loss.backward()
    part = getattr(model, slot)
    for pname, p in part.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), f"{slot} {name}: {pname}"
    assert all(p.grad is not None for p in model.decoder.parameters())


@pytest.mark.parametrize("name", REGISTRY.names("dataset"))
def test_dataset_contract(vanilla, tmp_path, name, image_tree):
    extra = {"image_folder": [f"data.root='{image_tree}'"]}.get(name, [])
    recipe, registry = load_recipe(vanilla, TINY + [f"data.use='{name}'", "data.train=6",
                                                    "data.test=3"] + extra)
    dataset = registry.get("dataset", name).factory(recipe.data.config)
    for split, count in (("train", 6), ("test", 3)):
        images = dataset.load(split)
        assert images.images.dtype == torch.uint8
        assert images.images.shape == (count, 3, 16, 16)
        if images.objects is not None:
            assert images.objects.shape == (count, 16, 16)
        for labels in images.labels.values():
            assert labels.shape[0] == count
