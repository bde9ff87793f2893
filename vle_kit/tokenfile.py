"""Saved tokens: a safetensors file holding each image's tokens, padded to the longest, with
each image's number of tokens (`lengths`); optionally the reconstruction after each token and
the masks a decoder needs; plus what made them (the run, the K it was asked for, the images and
the stopping rule)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save

from vle_kit.checkpoint import atomic
from vle_kit.errors import VleKitError

FORMAT = "vle_kit tokens 3"


def save_tokens(path: Path, tensors: dict[str, torch.Tensor], *, run: Path, k: int,
                images: list[str], max_error: float | None = None,
                min_mask: float | None = None) -> None:
    """Write `tensors` ("tokens" (N, L, c, s, s), "lengths" (N,) and optional "recons",
    "masks") atomically. `k` is the K the encoder was asked for; `images` names the N images;
    `max_error` and `min_mask` the rules that stopped them, if any."""
    metadata = {"format": FORMAT, "run": str(Path(run).resolve()), "k": str(k),
                "images": json.dumps(images), "max_error": json.dumps(max_error),
                "min_mask": json.dumps(min_mask)}
    with atomic(Path(path)) as f:
        f.write(save({k: v.contiguous().cpu() for k, v in tensors.items()}, metadata))


def load_tokens(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """The tensors and metadata (run, k, images) of a saved token file."""
    try:
        with safe_open(path, "pt") as f:
            metadata = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}
    except FileNotFoundError:
        raise VleKitError(f"{path}: no such token file") from None
    except (SafetensorError, OSError, ValueError) as e:
        raise VleKitError(f"{path}: not a readable safetensors file ({e})") from None
    if metadata.get("format") != FORMAT or "tokens" not in tensors or "lengths" not in tensors:
        raise VleKitError(f"{path}: not a vle_kit token file ({FORMAT})")
    return tensors, {"run": Path(metadata["run"]), "k": int(metadata["k"]),
                     "images": json.loads(metadata["images"]),
                     "max_error": json.loads(metadata["max_error"]),
                     "min_mask": json.loads(metadata["min_mask"])}
