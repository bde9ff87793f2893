"""Hypothesis strategies for what plug-ins consume: images, mask stacks and logits.

Shapes are small by default, so a property runs in milliseconds; every size is a parameter.
Mask stacks are (B, K, 1, H, W) in [0, 1] and include the edge cases that break mask losses:
all zero, all one, binary, nearly binary, disjoint partitions and the collapse pattern.
"""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays


def _floats(low: float, high: float) -> st.SearchStrategy[float]:
    return st.floats(low, high, allow_nan=False, allow_infinity=False, width=32)


@st.composite
def shapes(draw, batch=(1, 3), k=(1, 4), size=(2, 8)) -> tuple[int, int, int, int]:
    """(B, K, H, W) within the given inclusive ranges."""
    return (draw(st.integers(*batch)), draw(st.integers(*k)), draw(st.integers(*size)),
            draw(st.integers(*size)))


@st.composite
def images(draw, batch=(1, 3), channels=3, size=(2, 8)) -> torch.Tensor:
    """Image batches (B, C, H, W) in [-1, 1]."""
    b, _, h, w = draw(shapes(batch=batch, k=(1, 1), size=size))
    array = draw(arrays(np.float32, (b, channels, h, w), elements=_floats(-1, 1)))
    return torch.from_numpy(array)


def logits(shape: tuple[int, ...], bound: float = 1e4) -> st.SearchStrategy[torch.Tensor]:
    """Logits of a given shape, including extreme values up to +-bound."""
    return arrays(np.float32, shape, elements=_floats(-bound, bound)).map(torch.from_numpy)


def _partition(rng: np.random.Generator, b: int, k: int, h: int, w: int) -> np.ndarray:
    labels = rng.integers(0, k, (b, h, w))
    return (labels[:, None] == np.arange(k)[None, :, None, None]).astype(np.float32)


def _collapse(b: int, k: int, h: int, w: int) -> np.ndarray:
    full = (np.arange(k) % 2 == 0).astype(np.float32)  # full, empty, full, empty, ...
    return np.broadcast_to(full[None, :, None, None], (b, k, h, w)).copy()


@st.composite
def mask_stacks(draw, batch=(1, 3), k=(1, 4), size=(2, 8),
                kinds=("uniform", "zeros", "ones", "binary", "nearly_binary", "partition",
                       "collapse")) -> torch.Tensor:
    """Mask stacks (B, K, 1, H, W) in [0, 1] of one of `kinds`."""
    b, kk, h, w = draw(shapes(batch=batch, k=k, size=size))
    kind = draw(st.sampled_from(kinds))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if kind == "uniform":
        m = draw(arrays(np.float32, (b, kk, h, w), elements=_floats(0, 1)))
    elif kind in ("zeros", "ones"):
        m = np.full((b, kk, h, w), float(kind == "ones"), dtype=np.float32)
    elif kind == "binary":
        m = rng.integers(0, 2, (b, kk, h, w)).astype(np.float32)
    elif kind == "nearly_binary":
        eps = draw(st.floats(1e-6, 1e-2))
        m = np.abs(rng.integers(0, 2, (b, kk, h, w)) - eps).astype(np.float32)
    elif kind == "partition":
        m = _partition(rng, b, kk, h, w)
    else:
        m = _collapse(b, kk, h, w)
    return torch.from_numpy(np.ascontiguousarray(m))[:, :, None]


def binary_stacks(**kw) -> st.SearchStrategy[torch.Tensor]:
    return mask_stacks(kinds=("zeros", "ones", "binary", "partition", "collapse"), **kw)


def partitions(**kw) -> st.SearchStrategy[torch.Tensor]:
    """Disjoint masks that together cover every pixel."""
    return mask_stacks(kinds=("partition",), **kw)


@st.composite
def states(draw, batch=(1, 3), channels=3, size=(2, 8), k=(1, 4)):
    """Engine states as a composer, saliency head or combiner sees them mid-loop: a step of k
    with a reconstruction and the masks of the earlier steps."""
    from vle_kit.interfaces import State

    b, s = draw(st.integers(*batch)), draw(st.integers(*size))
    total = draw(st.integers(*k))
    state = State.start(draw(images(batch=(b, b), channels=channels, size=(s, s))), total,
                        progress=draw(_floats(0, 1)))
    state.step = draw(st.integers(0, total - 1))
    state.recon = draw(images(batch=(b, b), channels=channels, size=(s, s)))
    if state.step:
        masks = draw(mask_stacks(batch=(b, b), k=(state.step, state.step), size=(s, s)))
        state.masks = list(masks.unbind(1))
        state.mask_sum = masks.sum(1).clamp(0, 1)
    return state


def with_images(masks: torch.Tensor, channels: int = 3) -> st.SearchStrategy[tuple]:
    """(masks, images): the stack with images in [-1, 1] of matching batch and size."""
    b, _, _, h, w = masks.shape
    images = arrays(np.float32, (b, channels, h, w), elements=_floats(-1, 1))
    return st.tuples(st.just(masks), images.map(torch.from_numpy))


def with_parts(case: tuple) -> st.SearchStrategy[tuple]:
    """(masks, images, parts): the pair with what each token drew (B, K, C, H, W) in [-1, 1]."""
    masks, images = case
    shape = masks.shape[:2] + images.shape[1:]
    parts = arrays(np.float32, shape, elements=_floats(-1, 1))
    return st.tuples(st.just(masks), st.just(images), parts.map(torch.from_numpy))


@st.composite
def exact_parts(draw, channels: int = 3, **kw) -> tuple[torch.Tensor, ...]:
    """(masks, images, parts): any mask stack, and every token's part drawing the image."""
    masks, images = draw(mask_stacks(**kw).flatmap(lambda m: with_images(m, channels)))
    return masks, images, images[:, None].expand(-1, masks.shape[1], -1, -1, -1).clone()


@st.composite
def painted_partitions(draw, channels: int = 3, **kw) -> tuple[torch.Tensor, torch.Tensor]:
    """(masks, images): a partition, and images of one flat colour under each of its masks."""
    masks = draw(partitions(**kw))
    b, k = masks.shape[:2]
    colours = draw(arrays(np.float32, (b, k, channels, 1, 1), elements=_floats(-1, 1)))
    return masks, (masks * torch.from_numpy(colours)).sum(1)
