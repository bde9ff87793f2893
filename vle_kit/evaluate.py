"""Per-token evaluation: after k = 1..K tokens, test MSE, PSNR, SSIM and the share of images
whose error fell at that token, beside PCA of equal size; how the tokens separate; the masks."""

from __future__ import annotations

import time
from pathlib import Path

import attrs
import torch

from vle_kit import distributed, report, separation
from vle_kit.adaptive import evaluate_adaptive
from vle_kit.config import Recipe
from vle_kit.data import ImageSet, augmented_orders, to_signed, to_unit
from vle_kit.decomposition import (collapse_share, count_accuracy, count_errors, fg_ari,
                                   label_tells_token, merged_share, missed_pixels, resumed_share)
from vle_kit.images import write_grid
from vle_kit.model import VLE, Encoding
from vle_kit.recipe import dump_recipe
from vle_kit.results import Curve, Evaluation, ImageShape, MaskScores
from vle_kit.runs import RunDir, RunInfo, command_line

PEAK = 2.0  # images live in [-1, 1]


def psnr(mse: torch.Tensor) -> torch.Tensor:
    return 10 * torch.log10(PEAK**2 / mse.clamp_min(1e-12))


def blur_matrix(n: int, sigma: float = 1.5, taps: int = 11) -> torch.Tensor:
    """(n, n) float64: a 1-D Gaussian blur of n samples with reflected borders, as a matrix."""
    half = taps // 2
    offsets = torch.arange(-half, half + 1)
    weights = torch.exp(-0.5 * (offsets.double() / sigma) ** 2)
    source = (torch.arange(n)[:, None] + offsets).abs()
    source = torch.where(source > n - 1, 2 * (n - 1) - source, source)
    return torch.zeros(n, n, dtype=torch.float64).scatter_add_(
        1, source, (weights / weights.sum()).expand(n, -1).contiguous())


def ssim(x: torch.Tensor, recons: torch.Tensor, block: int = 256) -> torch.Tensor:
    """Per-image SSIM (N, K) of recons (N, K, C, H, W) against x (N, C, H, W), range [-1, 1]:
    torchmetrics' definition (an 11-tap Gaussian window of sigma 1.5 over reflect-padded
    images, averaged over every pixel), its blur done as two small matrix products, which is
    ten times faster here than the 2-D convolution (tests/test_evaluation.py holds them equal).
    `block` images at a time: PCA's 1000 x 8 reconstructions in one piece took 8.9 s of an
    evaluation on two cores, in blocks 1.7 s (their temporaries no longer a gigabyte each)."""
    n, k = recons.shape[:2]
    rows, cols = (blur_matrix(side).to(recons) for side in recons.shape[-2:])
    c1, c2 = (0.01 * PEAK) ** 2, (0.03 * PEAK) ** 2
    out = []
    for start in range(0, n, block):
        a = recons[start:start + block].clamp(-1, 1).flatten(0, 1)
        b = x[start:start + block].repeat_interleave(k, 0)
        mean_a, mean_b, aa, bb, ab = (rows @ t @ cols.T for t in (a, b, a * a, b * b, a * b))
        var_a, var_b = (aa - mean_a**2).clamp_min(0), (bb - mean_b**2).clamp_min(0)
        covariance = ab - mean_a * mean_b
        index = ((2 * mean_a * mean_b + c1) * (2 * covariance + c2)
                 / ((mean_a**2 + mean_b**2 + c1) * (var_a + var_b + c2)))
        out.append(index.flatten(1).mean(1).view(-1, k))
    return torch.cat(out)


def scores(x: torch.Tensor, recons: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-image MSE (N, K + 1), from the empty reconstruction (zeros) on, and SSIM (N, K)."""
    errors = (recons - x[:, None]).pow(2).mean(dim=(2, 3, 4))
    return {"mse": torch.cat([x.pow(2).mean(dim=(1, 2, 3))[:, None], errors], 1),
            "ssim": ssim(x, recons)}


@attrs.frozen
class Encoded:
    """One K-token encoding of a set of images, per image."""

    tokens: torch.Tensor  # (N, K, channels, size, size)
    mse: torch.Tensor | None  # (N, K + 1) after 0..K tokens
    ssim: torch.Tensor | None  # (N, K) after 1..K tokens
    masks: torch.Tensor | None  # (N, K, 1, H, W)
    claims: torch.Tensor | None  # (N, K, O + 1) share of each token on each object id
    recons: torch.Tensor | None = None  # (N, K, C, H, W), when asked for


@torch.no_grad()
def encode_all(model: VLE, images: torch.Tensor, k: int, device: torch.device,
               objects: torch.Tensor | None = None, batch: int = 250,
               score: str = "all", recons: bool = False) -> Encoded:
    """Encode uint8 images into k tokens each, scoring the reconstruction after every token
    (score="all"), only after the last (mse then holds zero tokens and k), or not at all
    ("none"); with `recons`, keep the reconstructions. With objects (N, H, W), also what share
    of each token's mask (or part, without masks) falls on each object. Under torchrun each
    rank encodes its share; all get the whole."""
    model.eval()
    ids = None if objects is None else int(objects.max()) + 1
    mine = distributed.shard(len(images))
    images, objects = images[mine], None if objects is None else objects[mine]
    out_parts: dict[str, list] = {"tokens": [], "mse": [], "ssim": [], "masks": [], "claims": [],
                                  "recons": []}
    for start in range(0, len(images), batch):
        x = to_signed(images[start:start + batch]).to(device)
        out = model(x, k)
        if score != "none":
            scored = scores(x, out.recons if score == "all" else out.recons[:, -1:])
            for name, value in scored.items():
                out_parts[name].append(value.cpu())
        out_parts["tokens"].append(out.tokens.cpu())
        if recons:
            out_parts["recons"].append(out.recons.cpu())
        if out.masks is not None:
            out_parts["masks"].append(out.masks.cpu())
        if objects is not None:
            weights = out.parts.abs().mean(2, keepdim=True) if out.masks is None else out.masks
            out_parts["claims"].append(separation.claims(weights.cpu(),
                                                         objects[start:start + batch], ids))
    joined = {name: torch.cat(parts) if parts else None for name, parts in out_parts.items()}
    return Encoded(**{name: distributed.gather(value) for name, value in joined.items()})


@torch.no_grad()
def encode_images(model: VLE, images: torch.Tensor, k: int, device: torch.device,
                  max_error: float | None = None, min_mask: float | None = None,
                  batch: int = 250) -> Encoding:
    """VLE.encode over uint8 images in batches: as many tokens as each image needs, at most k
    (all k without a threshold); tokens and masks padded to the longest length."""
    model.eval()
    parts = [model.encode(to_signed(images[i:i + batch]).to(device), k, max_error, min_mask)
             for i in range(0, len(images), batch)]
    longest = max(p.tokens.shape[1] for p in parts)

    def padded(t: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.pad(t, [0, 0] * (t.dim() - 2) + [0, longest - t.shape[1]])

    masks = [p.masks for p in parts]
    return Encoding(torch.cat([padded(p.tokens) for p in parts]).cpu(),
                    torch.cat([p.lengths for p in parts]).cpu(),
                    torch.cat([p.recons for p in parts]).cpu(),
                    None if masks[0] is None else torch.cat([padded(m) for m in masks]).cpu())


@torch.no_grad()
def decode_images(model: VLE, tokens: torch.Tensor, lengths: torch.Tensor, k: int,
                  masks: torch.Tensor | None, device: torch.device,
                  every: bool = False) -> torch.Tensor:
    """Each image decoded from its first `lengths` tokens of a k-token encoding: its last
    reconstruction (N, C, H, W), or with `every` the reconstruction after each token
    (N, L, C, H, W), zero past its length."""
    out = model.decode(tokens.to(device), k, None if masks is None else masks.to(device))
    recons = out.recons.cpu()
    if every:
        steps = torch.arange(recons.shape[1])[None, :, None, None, None]
        return recons * (steps < lengths[:, None, None, None, None])
    return recons[torch.arange(len(recons)), lengths - 1]


def summary(mse: torch.Tensor, ssim: torch.Tensor) -> Curve:
    """Means over images per k from per-image MSE (N, K + 1) and SSIM (N, K); `improved` is
    the share of images whose error fell at token k."""
    return Curve(mse=mse[:, 1:].mean(0).tolist(), psnr=psnr(mse[:, 1:]).mean(0).tolist(),
                 ssim=ssim.mean(0).tolist(),
                 improved=(mse[:, 1:] < mse[:, :-1]).float().mean(0).tolist())


@torch.no_grad()
def moments(train: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (float64) and covariance of uint8 images `train`, flattened."""
    x = to_signed(train).flatten(1)
    mean = x.double().mean(0)
    x = x - mean.float()
    # float32 covariance and eigenvectors: the test MSE agrees with float64's to 1e-6 of
    # itself at 64..512 floats of shapes, and the fit takes a third less time
    return mean, x.T @ x / len(x)


@attrs.frozen
class PCA:
    """Principal components of a set of images, strongest first, to rebuild others from."""

    mean: torch.Tensor  # (D,) float64
    basis: torch.Tensor  # (D, components) float64

    @classmethod
    @torch.no_grad()
    def fit(cls, train: torch.Tensor, components: int, augment: tuple[str, ...] = ()) -> PCA:
        """Fit on uint8 images `train`, keeping `components`; with `augment`, on the training
        images under every combination of those augmentations, as a run with train.augment
        sees them (from the stored images' moments, without making the copies)."""
        return cls.from_moments(*moments(train), components, tuple(train.shape[1:]), augment)

    @classmethod
    def from_moments(cls, mean: torch.Tensor, covariance: torch.Tensor, components: int,
                     shape: tuple[int, ...], augment: tuple[str, ...] = ()) -> PCA:
        """PCA of images of `shape` with these moments (see `moments`), optionally augmented."""
        if augment:  # a mixture's covariance: the versions' mean covariance, plus their means'
            orders = augmented_orders(shape, augment)
            means = torch.stack([mean[o] for o in orders])
            spread = (means - means.mean(0)).float()
            within = sum(covariance[o][:, o] for o in orders)
            covariance = (within + spread.T @ spread) / len(orders)
            mean = means.mean(0)
        _, vectors = torch.linalg.eigh(covariance)
        return cls(mean, vectors.flip(1)[:, :components].double())

    @torch.no_grad()
    def rebuild(self, test: torch.Tensor, floats: list[int]) -> torch.Tensor:
        """(N, len(floats), C, H, W): uint8 images `test` rebuilt from their first `floats`
        components."""
        coords = (to_signed(test).flatten(1).double() - self.mean) @ self.basis
        rebuilt = [coords[:, :f] @ self.basis[:, :f].T + self.mean for f in floats]
        return torch.stack(rebuilt, 1).float().view(len(test), len(floats), *test.shape[1:])


def separation_numbers(probe: Encoded | None, probe_set: ImageSet, test: Encoded,
                       test_set: ImageSet, floats: int) -> dict:
    """Token similarity within an image and, for labelled data, clustering and probes."""
    result = {"similarity": separation.token_similarity(test.tokens)}
    if not test_set.labels:
        return result

    def split(encoded: Encoded, images: ImageSet) -> dict:
        return {"tokens": encoded.tokens.flatten(2), "claims": encoded.claims,
                "images": to_signed(images.images), "objects": images.objects,
                "labels": images.labels}

    train, held_out = split(probe, probe_set), split(test, test_set)
    if test_set.objects is not None:
        result["objects"] = separation.object_separation(train, held_out, floats)
    else:
        result["images"] = separation.image_separation(train, held_out, floats)
    return result


def evaluate(model: VLE, train_set: ImageSet, test_set: ImageSet, *, k: int,
             floats_per_token: int, device: torch.device, probe_images: int = 1000,
             recipe: str = "", data: str = "", max_error: tuple[float, ...] = (),
             min_mask: float = 0.005, augment: tuple[str, ...] = ()) -> Evaluation | None:
    """The VLE's prefix curve (first j of one k-token encoding, j = 1..k), the VLE asked for
    exactly j tokens, PCA; token separation; for models with masks, how they split the
    scenes; with `augment` (the run's train.augment), PCA fitted on the training images so
    augmented too. Under torchrun every rank encodes its share; rank 0 alone returns the
    result."""
    test = encode_all(model, test_set.images, k, device, test_set.objects)
    asked = [encode_all(model, test_set.images, j, device, score="last") for j in range(1, k)]
    asked_mse = torch.stack([test.mse[:, 0]] + [a.mse[:, -1] for a in asked] + [test.mse[:, -1]],
                            1)
    asked_ssim = torch.stack([a.ssim[:, -1] for a in asked] + [test.ssim[:, -1]], 1)
    probe_set = train_set[:probe_images]
    probe = encode_all(model, probe_set.images, k, device, probe_set.objects,
                       score="none") if test_set.labels else None  # probes need labels
    if not distributed.is_main():  # the encodings were shared; the rest is rank 0's
        return None
    floats = [min(j * floats_per_token, test_set.images[0].numel()) for j in range(1, k + 1)]
    c, h, w = test_set.images.shape[1:]
    mask_floats = h * w if test.masks is not None and not model.saliency.from_tokens else 0
    counted = [min(j * (floats_per_token + mask_floats), test_set.images[0].numel())
               for j in range(1, k + 1)]  # masks that saw the image count as floats too
    x = to_signed(test_set.images)
    stored = moments(train_set.images)  # fitted once, augmented from the same moments
    fitted = PCA.from_moments(*stored, max(counted), (c, h, w))
    pca = scores(x, fitted.rebuild(test_set.images, floats))
    masks = None
    if test.masks is not None:
        masks = MaskScores(collapse_share=collapse_share(test.masks),
                           resumed_share=resumed_share(test.masks))
        if test_set.objects is not None:
            objects = test_set.objects
            masks = attrs.evolve(masks, fg_ari=fg_ari(test.masks, objects).nanmean().item(),
                                 count_accuracy=count_accuracy(test.masks, objects),
                                 count_errors=count_errors(test.masks, objects),
                                 merged_share=merged_share(test.masks, objects),
                                 missed_pixels=missed_pixels(test.masks, objects),
                                 label_tells_token={
                                     name: label_tells_token(test.masks, objects, labels)
                                     for name, labels in test_set.labels.items()} or None)
    adaptive = evaluate_adaptive(test.mse, test.ssim, asked_mse, test_set.images,
                                 test_set.objects, test.masks, max_error, min_mask)
    pca_augmented = None
    if augment:
        fitted_augmented = PCA.from_moments(*stored, max(floats), (c, h, w), augment)
        augmented = scores(x, fitted_augmented.rebuild(test_set.images, floats))
        pca_augmented = summary(augmented["mse"], augmented["ssim"])
    pca_with_masks = None
    if mask_floats:
        with_masks = scores(x, fitted.rebuild(test_set.images, counted))
        pca_with_masks = summary(with_masks["mse"], with_masks["ssim"])
    return Evaluation(recipe=recipe, data=data, tokens=list(range(1, k + 1)), floats=floats,
                      test_images=len(test_set), image=ImageShape(channels=c, height=h, width=w),
                      vle=summary(test.mse, test.ssim), vle_asked_k=summary(asked_mse, asked_ssim),
                      pca=summary(pca["mse"], pca["ssim"]),
                      separation=separation_numbers(probe, probe_set, test, test_set,
                                                    floats_per_token), masks=masks,
                      adaptive=adaptive, mask_floats=mask_floats, pca_with_masks=pca_with_masks,
                      pca_augmented=pca_augmented)


@torch.no_grad()
def write_grids(model: VLE, images: torch.Tensor, k: int, device: torch.device, grid: Path,
                masks: Path) -> None:
    """One pass over `images`: `grid` gets the input and the reconstruction after each token;
    for a model with masks, `masks` gets the input and each token's mask and masked part."""
    model.eval()
    x = to_signed(images).to(device)
    out = model(x, k)
    write_grid([x, *out.recons.unbind(1)], grid)
    if out.masks is not None:
        shown = out.masks.expand(-1, -1, x.shape[1], -1, -1)
        write_grid([x, *[c for m, p in zip(shown.unbind(1), out.parts.unbind(1))
                         for c in (m * 2 - 1, m * p - (1 - m))]], masks)


@torch.no_grad()
def write_lengths(model: VLE, images: torch.Tensor, k: int, result: Evaluation,
                  device: torch.device, title: str, path: Path, per_length: int = 2) -> None:
    """Encode `images` adaptively at the headline threshold (E_4, or E_K for K < 4) and draw
    up to `per_length` of them for each length they got, sorted by length."""
    saving = result.adaptive.savings[min(4, k) - 1]
    x = to_signed(images).to(device)
    encoded = model.eval().encode(x, k, max_error=saving.max_error)
    shown = torch.cat([torch.nonzero(encoded.lengths == n)[:per_length, 0]
                       for n in range(1, k + 1)])
    report.write_lengths_plot(to_unit(x[shown]).cpu(), to_unit(encoded.recons[shown]).cpu(),
                              encoded.lengths[shown].cpu(),
                              f"{title}: lengths at MSE <= {saving.max_error:.4f}", path)


def write_evaluation(model: VLE, recipe: Recipe, train_set: ImageSet, test_set: ImageSet,
                     device: torch.device, folder: RunDir, title: str,
                     trained: RunDir | None = None) -> Evaluation | None:
    """Evaluate and write eval.json, the figures, the grids and report.html into `folder`
    (under torchrun: rank 0 writes and returns the result, the others return None). `trained`
    is the run whose training the report shows (its run.json and metrics)."""
    started = time.perf_counter()
    result = evaluate(model, train_set, test_set, k=recipe.eval_tokens,
                      floats_per_token=recipe.model.token.floats, device=device,
                      probe_images=recipe.eval.probe_images, recipe=recipe.recipe.name,
                      data=recipe.data.use, max_error=recipe.eval.max_error,
                      min_mask=recipe.eval.min_mask, augment=recipe.train.augment)
    if result is None:
        return None
    folder.path.mkdir(parents=True, exist_ok=True)
    result.write(folder.eval_json)
    report.write_curve_plot(result, title, folder.curve_png)
    report.write_similarity_plot(result, title, folder.similarity_png)
    report.write_probe_plot(result, title, folder.probe_png)
    write_grids(model, test_set.images[:recipe.train.grid_images], recipe.eval_tokens, device,
                folder.grid_png, folder.masks_png)
    report.write_adaptive_plot(result, title, folder.adaptive_png)
    write_lengths(model, test_set.images[:200], recipe.eval_tokens, result, device, title,
                  folder.lengths_png)
    if trained is not None:
        report.write_training_plot(trained.metrics, title, folder.training_png)
    report.write_report(result, dump_recipe(recipe), title, folder.path,
                        None if trained is None else RunInfo.read(trained),
                        eval_seconds=time.perf_counter() - started, command=command_line())
    return result
