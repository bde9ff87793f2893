"""The slot table: every place a plug-in fills, in one list that the recipe, the build, the
registry, `vle-kit plugins`, `vle-kit check` and the testing kit loop over.

Adding a slot is one hook in hookspecs.py, one base class, one row here and one file per
built-in in plugins/.
"""

from __future__ import annotations

import attrs

from vle_kit.data import DataConfig, Dataset
from vle_kit.interfaces import (
    Combiner,
    Composer,
    Decoder,
    Locator,
    MaskLoss,
    MaskLossConfig,
    Memory,
    SaliencyHead,
)


@attrs.frozen
class Slot:
    """One slot: its name in recipes and messages, the hook that fills it, the base class its
    plug-ins subclass, where the recipe chooses it, and what it defaults to."""

    name: str
    hook: str
    base: type
    key: str  # the recipe table that chooses it: "model.memory", "data", "mask_loss"
    default: str | None  # the `use` taken when the recipe says nothing; None: a list of choices
    options: type | None = None  # the attrs class every plug-in's Config must subclass

    @property
    def many(self) -> bool:
        """Chosen any number of times ([[mask_loss]] tables), not once."""
        return self.default is None

    @property
    def model_part(self) -> bool:
        """Built into the VLE as `Cls(cfg, spec)`; the others are losses and data sets."""
        return self.key.startswith("model.")


SLOTS = (
    Slot("composer", "register_composers", Composer, "model.composer", "residual"),
    Slot("memory", "register_memories", Memory, "model.memory", "convlstm"),
    Slot("locator", "register_locators", Locator, "model.locator", "none"),
    Slot("decoder", "register_decoders", Decoder, "model.decoder", "plain"),
    Slot("saliency", "register_saliency_heads", SaliencyHead, "model.saliency", "none"),
    Slot("combiner", "register_combiners", Combiner, "model.combiner", "sum"),
    Slot("dataset", "register_datasets", Dataset, "data", "shapes", DataConfig),
    Slot("mask_loss", "register_mask_losses", MaskLoss, "mask_loss", None, MaskLossConfig),
)
MODEL_SLOTS = tuple(s for s in SLOTS if s.model_part)
BY_NAME = {s.name: s for s in SLOTS}
