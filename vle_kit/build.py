"""From a recipe and the registry to the things a run is made of: the model's parts and the
VLE, the mask losses, the data, the device; and a finished run loaded back from its folder.

The trainer, the CLI, the benchmarks and the testing kit all build through here.
"""

from __future__ import annotations

import os
from collections import Counter

import attrs
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from vle_kit import checkpoint
from vle_kit.config import Recipe
from vle_kit.data import ImageSet
from vle_kit.errors import RecipeError, VleKitError
from vle_kit.interfaces import MaskLoss, ModelSpec
from vle_kit.model import VLE
from vle_kit.objective import objective
from vle_kit.plugins import Registry
from vle_kit.recipe import load_recipe
from vle_kit.runs import RunDir
from vle_kit.slots import MODEL_SLOTS


def select_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise VleKitError("train.device: 'cuda' asked for, but no CUDA device is available")
    return torch.device(name)


def model_spec(recipe: Recipe, registry: Registry, image_channels: int = 3) -> ModelSpec:
    """What the parts of the recipe's model need to know about it."""
    m = recipe.model
    saliency = registry.get("saliency", m.saliency.use).factory
    return ModelSpec(image_channels=image_channels, image_size=recipe.data.config.size,
                     width=m.width, tokens_max=recipe.tokens.max,
                     token_channels=m.token.channels, token_size=m.token.size,
                     mask_channels=saliency.decoder_channels, narrowest=m.narrowest)


def build_model(recipe: Recipe, registry: Registry, image_channels: int = 3) -> VLE:
    """The VLE of the recipe, with the plug-in it chooses in every model slot."""
    spec = model_spec(recipe, registry, image_channels)
    parts: dict[str, nn.Module] = {}
    for slot in MODEL_SLOTS:
        choice = getattr(recipe.model, slot.name)
        parts[slot.name] = registry.get(slot.name, choice.use).factory(choice.config, spec)
    return VLE(recipe.model, spec, parts)


def build_mask_losses(recipe: Recipe, registry: Registry) -> list[tuple[str, MaskLoss]]:
    """(name, loss) for every [[mask_loss]] table, in recipe order; a loss used twice is
    named `use_2` the second time, so each logs its own term."""
    losses, seen = [], Counter()
    for c in recipe.mask_loss:
        seen[c.use] += 1
        name = c.use if seen[c.use] == 1 else f"{c.use}_{seen[c.use]}"
        losses.append((name, registry.get("mask_loss", c.use).factory(c.config)))
    return losses


@attrs.frozen
class Size:
    """What one training step of a recipe costs, worked out on PyTorch's meta device (shapes
    only: nothing is allocated or computed), for `vle-kit check` to show before a run."""

    parameters: int
    floats_per_token: int
    flops_per_image_token: float  # a training step's forward and backward, per image and token
    peak_bytes: int  # weights, gradients, AdamW's two moments and what backward keeps

    def describe(self, recipe: Recipe) -> str:
        return (f"{self.parameters:,} parameters; a token is {self.floats_per_token} floats; "
                f"{self.flops_per_image_token / 1e6:.3g} MFLOP per image per token to train; "
                f"about {self.peak_bytes / 2**20:,.0f} MB per training step (batch "
                f"{recipe.train.batch}, K = {recipe.tokens.max})")


def measure_size(recipe: Recipe, registry: Registry, image_channels: int = 3) -> Size:
    """The size of the recipe's model and of one training step at K = tokens.max."""
    with torch.device("meta"):
        model = build_model(recipe, registry, image_channels)
        size = recipe.data.config.size
        x = torch.zeros(recipe.train.batch, image_channels, size, size)
    weights = {p.untyped_storage()._cdata for p in model.parameters()}
    kept: dict[int, int] = {}  # storage -> bytes of what autograd saves for backward

    def keep(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage._cdata not in weights:
            kept[storage._cdata] = storage.nbytes()
        return t

    with FlopCounterMode(display=False) as flops:
        with torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t):
            out = model.train()(x, recipe.tokens.max)
            loss = objective(out, x, recipe, 0, build_mask_losses(recipe, registry))["loss"]
        loss.backward()
    parameters = sum(p.numel() for p in model.parameters())
    return Size(parameters=parameters, floats_per_token=recipe.model.token.floats,
                flops_per_image_token=flops.get_total_flops() / x.shape[0] / recipe.tokens.max,
                peak_bytes=4 * 4 * parameters + sum(kept.values()))


def checked_size(recipe: Recipe, registry: Registry, source: str) -> Size:
    """measure_size, with what would fail at the start of a run reported as a recipe error
    naming `source`: a limit a plug-in finds only when built into the model's shape (a
    decoder's unfold past the token's size), or a step that does not fit in memory."""
    try:
        size = measure_size(recipe, registry)
    except RecipeError:
        raise
    except VleKitError as e:
        raise RecipeError(source, [str(e)]) from None
    check_fits(recipe, size, source)
    return size


def available_memory(device: torch.device) -> int:
    """Bytes of memory the device has in all (a GPU's own, or the machine's)."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def check_fits(recipe: Recipe, size: Size, source: str) -> None:
    """A recipe whose training step cannot fit in memory is a recipe error, before any run."""
    device = select_device(recipe.train.device)
    have = available_memory(device)
    if size.peak_bytes > have:
        raise RecipeError(source, [
            f"model.width: a training step of this model needs about "
            f"{size.peak_bytes / 2**30:,.3g} GB ({size.parameters:,} parameters, batch "
            f"{recipe.train.batch}, K = {recipe.tokens.max}), more than the "
            f"{have / 2**30:.0f} GB of the {device.type}"])


def load_data(recipe: Recipe, registry: Registry) -> tuple[ImageSet, ImageSet]:
    """The train and test splits of the recipe's data set."""
    dataset = registry.get("dataset", recipe.data.use).factory(recipe.data.config)
    return dataset.load("train"), dataset.load("test")


@attrs.frozen
class TrainedRun:
    """A finished (or stopped) run, loaded to evaluate, encode or decode with."""

    run: RunDir
    recipe: Recipe
    registry: Registry
    model: VLE
    device: torch.device


def load_run(path, overrides: list[str] = (), plugins: list[str] = (), data: str | None = None,
             device: str | None = None) -> TrainedRun:
    """The model of a run directory from its last checkpoint, in eval mode; `data` and
    `overrides` change what the recipe says about the data (see `load_recipe`)."""
    run = RunDir.existing(path)
    recipe, registry = load_recipe(run.recipe, overrides, plugins, data)
    state = checkpoint.load(run.checkpoint)
    chosen = select_device(device or recipe.train.device)
    model = build_model(recipe, registry, state.get("image_channels", 3))
    try:
        model.load_state_dict(state.get("averaged", state["model"]))  # train.ema's average
    except RuntimeError as e:
        lines = str(e).strip().splitlines()
        raise VleKitError(f"{run.checkpoint}: does not fit the model of {run.recipe} "
                          f"({lines[min(1, len(lines) - 1)].strip()})") from None
    return TrainedRun(run, recipe, registry, model.to(chosen).eval(), chosen)
