"""Checkpoints: one file of tensors and plain values, written atomically, read safely."""

from __future__ import annotations

import os
import pickle
import random
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

from vle_kit.errors import VleKitError

FORMAT_VERSION = 1


@contextmanager
def atomic(path: Path) -> Iterator[BinaryIO]:
    """A binary file that appears at `path` whole or not at all: written to a temporary file
    beside it, flushed to disk, then renamed over it; removed if the write fails."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save(state: dict, path: Path) -> None:
    """Write `state` atomically (see `atomic`)."""
    with atomic(path) as f:
        torch.save({"format_version": FORMAT_VERSION, **state}, f)


def clean_temporary(folder: Path) -> list[Path]:
    """Remove what a killed save left behind (SIGKILL skips every cleanup handler)."""
    leftovers = sorted(folder.glob(".*.tmp")) if folder.is_dir() else []
    for path in leftovers:
        path.unlink(missing_ok=True)
    return leftovers


def load(path: Path, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint without running any code from it; one-line errors for bad files."""
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise VleKitError(f"{path}: no such checkpoint") from None
    except (pickle.UnpicklingError, RuntimeError, zipfile.BadZipFile, EOFError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise VleKitError(f"{path}: not a readable vle_kit checkpoint ({first})") from None
    if not isinstance(state, dict) or state.get("format_version") != FORMAT_VERSION:
        raise VleKitError(f"{path}: not a vle_kit checkpoint of format {FORMAT_VERSION}")
    return state


def rng_state() -> dict:
    """Every global random generator, as tensors and plain values (loadable weights-only)."""
    version, mt, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "python": {"version": version, "state": list(mt), "gauss": gauss},
            "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": pos,
                      "has_gauss": has_gauss, "cached": cached}}


def set_rng_state(state: dict) -> None:
    """Restore what `rng_state` saved."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["cached"]))
