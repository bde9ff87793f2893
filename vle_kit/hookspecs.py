"""The hooks a plug-in implements: one per slot, each handing named factories to `register`.

`register(name, factory)` takes a name unique within the slot and a class whose inner attrs
`Config` class holds its recipe options. Built-in plug-ins use exactly these hooks.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("vle_kit")
hookimpl = pluggy.HookimplMarker("vle_kit")


@hookspec
def register_composers(register):
    """Input composers: what the encoder sees at each step (e.g. the residual x - recon)."""


@hookspec
def register_memories(register):
    """Memory modules run right after the encoder's stem, carrying state across steps."""


@hookspec
def register_locators(register):
    """Locators: where the token of each step looks, chosen before it is encoded."""


@hookspec
def register_decoders(register):
    """Decoders: a token into the part it adds, maybe seeing what earlier tokens drew."""


@hookspec
def register_saliency_heads(register):
    """Saliency heads: the mask saying which part of the image a token explains."""


@hookspec
def register_combiners(register):
    """Combiners: how a new part (and its mask) joins the running reconstruction."""


@hookspec
def register_mask_losses(register):
    """Mask losses: penalties on the stack of masks (B, K, 1, H, W) and the images."""


@hookspec
def register_datasets(register):
    """Data sets: images in [0, 255] with optional object ids and labels."""
