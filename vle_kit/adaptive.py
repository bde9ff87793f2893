"""Adaptive length, measured: each image stops at the first token after which its error is at
most a threshold (the rule of `VLE.encode`), and what that saves against giving every image
the same number of tokens.

A VLE already knows every image's error after every token, so the whole coverage curve
(ElasticTok's protocol applied to the residual rule) follows from one K-token encoding's
per-image errors: no search over lengths, no second pass.
"""

from __future__ import annotations

import io

import attrs
import numpy as np
import torch
from PIL import Image
from scipy.stats import spearmanr
from torch import Tensor

from vle_kit.decomposition import mask_area, regions

QUANTILE = 0.95  # the headline: the threshold that brings this share of images under it


def lengths_for(mse: Tensor, max_error: float) -> Tensor:
    """(N, K + 1) per-image MSE after 0..K tokens -> (N,) the first k >= 1 with MSE at most
    max_error, or K when none is."""
    met = mse[:, 1:] <= max_error
    first = met.float().argmax(1) + 1
    return torch.where(met.any(1), first, torch.full_like(first, mse.shape[1] - 1))


def lengths_by_masks(masks: Tensor, min_mask: float) -> Tensor:
    """(N, K, 1, H, W) masks -> (N,) tokens kept when an image stops before the first token
    (after the first) whose mask holds less than `min_mask` of the image."""
    empty = mask_area(masks)[:, 1:] < min_mask
    first = empty.float().argmax(1) + 1
    return torch.where(empty.any(1), first, torch.full_like(first, masks.shape[1]))


@attrs.frozen(kw_only=True)
class Point:
    """The adaptive encoding at one threshold, beside the same model cut to a fixed length."""

    max_error: float
    mean_tokens: float
    tokens: list[int]  # how many images used 1, 2, ..., K tokens
    share_met: float  # images whose error is at most max_error (the rest used K tokens)
    mse: float  # mean MSE of the adaptive encodings
    ssim: float
    fixed_mse: float  # the prefix curve at mean_tokens (interpolated): equal mean floats
    asked_mse: float  # each image asked for exactly its length instead of K, then cut
    asked_share_met: float


@attrs.frozen(kw_only=True)
class Saving:
    """Fixed length k brings QUANTILE of the images under max_error; adaptive needs a mean of
    mean_tokens for all of them (or K tokens)."""

    k: int
    max_error: float
    mean_tokens: float
    saved: float  # 1 - mean_tokens / k


@attrs.frozen(kw_only=True)
class Adaptive:
    rule: str  # what stops an image
    points: list[Point]
    savings: list[Saving]
    complexity: str  # what tokens used are ranked against: "objects" or "png_bytes"
    spearman: float  # rank correlation of tokens used (at the k = 4 saving) with complexity
    mask_rule: dict | None = None  # mask models: tokens kept by the empty-mask rule


def point(mse: Tensor, ssim: Tensor, asked_mse: Tensor, max_error: float) -> Point:
    """mse, asked_mse (N, K + 1) per image after 0..K tokens (prefixes of one K-token
    encoding; the model asked for exactly k), ssim (N, K)."""
    k_max = mse.shape[1] - 1
    lengths = lengths_for(mse, max_error)
    rows = torch.arange(len(mse))
    mean = lengths.float().mean().item()
    curve = mse[:, 1:].mean(0).numpy()
    asked = asked_mse[rows, lengths]
    return Point(max_error=max_error, mean_tokens=mean,
                 tokens=torch.bincount(lengths - 1, minlength=k_max).tolist(),
                 share_met=(mse[rows, lengths] <= max_error).float().mean().item(),
                 mse=mse[rows, lengths].mean().item(),
                 ssim=ssim[rows, lengths - 1].mean().item(),
                 fixed_mse=float(np.interp(mean, np.arange(1, k_max + 1), curve)),
                 asked_mse=asked.mean().item(),
                 asked_share_met=(asked <= max_error).float().mean().item())


def png_bytes(images: Tensor) -> Tensor:
    """(N,) the size of each uint8 image (N, C, H, W) as a PNG: a measure of its detail."""
    sizes = []
    for image in images:
        buffer = io.BytesIO()
        array = image.permute(1, 2, 0).numpy()
        Image.fromarray(array[..., 0] if array.shape[2] == 1 else array).save(buffer, "PNG")
        sizes.append(buffer.tell())
    return torch.tensor(sizes)


def evaluate_adaptive(mse: Tensor, ssim: Tensor, asked_mse: Tensor, images: Tensor,
                      objects: Tensor | None, masks: Tensor | None,
                      thresholds: tuple[float, ...] = (), min_mask: float = 0.005) -> Adaptive:
    """The coverage curve at the thresholds that bring QUANTILE of the images under the error
    of each fixed length, and at `thresholds`; the savings; tokens used against complexity
    (object count where the data has object ids, PNG size otherwise)."""
    k_max = mse.shape[1] - 1
    quantiles = torch.quantile(mse[:, 1:], QUANTILE, dim=0).tolist()
    points = [point(mse, ssim, asked_mse, e) for e in sorted({*quantiles, *thresholds})]
    savings = []
    for k, e in enumerate(quantiles, 1):
        mean = lengths_for(mse, e).float().mean().item()
        savings.append(Saving(k=k, max_error=e, mean_tokens=mean, saved=1 - mean / k))
    if objects is not None:
        name, complexity = "objects", regions(objects) - 1
    else:
        name, complexity = "png_bytes", png_bytes(images)
    headline = lengths_for(mse, quantiles[min(4, k_max) - 1])
    mask_rule = None
    if masks is not None:
        kept = lengths_by_masks(masks, min_mask)
        mask_rule = {"min_mask": min_mask, "mean_tokens": kept.float().mean().item(),
                     "tokens": torch.bincount(kept - 1, minlength=k_max).tolist(),
                     "mse": mse[torch.arange(len(mse)), kept].mean().item(),
                     "spearman": _spearman(kept, complexity)}
    return Adaptive(rule="error", points=points, savings=savings, complexity=name,
                    spearman=_spearman(headline, complexity), mask_rule=mask_rule)


def _spearman(a: Tensor, b: Tensor) -> float:
    if len(a.unique()) < 2 or len(b.unique()) < 2:
        return float("nan")
    return float(spearmanr(a.numpy(), b.numpy()).statistic)
