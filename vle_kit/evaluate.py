"""Per-token evaluation: after k = 1..K tokens, test MSE, PSNR, SSIM and the share of images
whose error fell at that token, beside PCA of equal size; how the tokens separate; the masks."""

from __future__ import annotations

import json
from pathlib import Path

import attrs
import torch
from torchmetrics.functional.image import structural_similarity_index_measure
from torchvision.utils import save_image

from vle_kit import distributed, report, separation
from vle_kit.config import Recipe
from vle_kit.decomposition import collapse_share, count_accuracy, fg_ari
from vle_kit.interfaces import ImageSet
from vle_kit.model import VLE
from vle_kit.recipe import dump_recipe
from vle_kit.runs import RunDir

PEAK = 2.0  # images live in [-1, 1]


def to_signed(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1]."""
    return images.float().div_(127.5).sub_(1)


def psnr(mse: torch.Tensor) -> torch.Tensor:
    return 10 * torch.log10(PEAK**2 / mse.clamp_min(1e-12))


def ssim(x: torch.Tensor, recons: torch.Tensor) -> torch.Tensor:
    """Per-image SSIM (N, K) of recons (N, K, C, H, W) against x (N, C, H, W), range [-1, 1]."""
    n, k = recons.shape[:2]
    side = min(x.shape[-2:])
    recons = recons.clamp(-1, 1).flatten(0, 1)
    return structural_similarity_index_measure(
        recons, x.repeat_interleave(k, 0), data_range=PEAK, reduction="none",
        kernel_size=min(11, side - 1 + side % 2)).view(n, k)


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
    masks: torch.Tensor | None  # (N, K, H, W)
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
            out_parts["masks"].append(out.masks[:, :, 0].cpu())
        if objects is not None:
            weights = out.parts.abs().mean(2) if out.masks is None else out.masks[:, :, 0]
            out_parts["claims"].append(separation.claims(weights.cpu(),
                                                         objects[start:start + batch], ids))
    joined = {name: torch.cat(parts) if parts else None for name, parts in out_parts.items()}
    return Encoded(**{name: distributed.gather(value) for name, value in joined.items()})


def summary(mse: torch.Tensor, ssim: torch.Tensor) -> dict[str, list[float]]:
    """Means over images per k from per-image MSE (N, K + 1) and SSIM (N, K); `improved` is
    the share of images whose error fell at token k."""
    return {"mse": mse[:, 1:].mean(0).tolist(), "psnr": psnr(mse[:, 1:]).mean(0).tolist(),
            "ssim": ssim.mean(0).tolist(),
            "improved": (mse[:, 1:] < mse[:, :-1]).float().mean(0).tolist()}


@torch.no_grad()
def pca_reconstructions(train: torch.Tensor, test: torch.Tensor,
                        floats: list[int]) -> torch.Tensor:
    """(N, len(floats), C, H, W): test images rebuilt by PCA fitted on `train` keeping `floats`
    components."""
    x = to_signed(train).flatten(1).double()
    mean = x.mean(0)
    x -= mean
    _, vectors = torch.linalg.eigh(x.T @ x)
    basis = vectors.flip(1)[:, :max(floats)]  # strongest components first
    t = to_signed(test).flatten(1).double() - mean
    coords = t @ basis
    rebuilt = [coords[:, :f] @ basis[:, :f].T + mean for f in floats]
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


def evaluate(model: VLE, train_set: ImageSet, test_set: ImageSet, *, k_max: int,
             floats_per_token: int, device: torch.device, probe_images: int = 1000) -> dict:
    """The numbers of eval.json: the VLE's prefix curve (first k of one K-token encoding), the
    VLE asked for exactly k tokens, PCA; token separation; for models with masks, how they
    split the scenes."""
    test = encode_all(model, test_set.images, k_max, device, test_set.objects)
    asked = [encode_all(model, test_set.images, k, device, score="last")
             for k in range(1, k_max)]
    asked_mse = torch.stack([test.mse[:, 0]] + [a.mse[:, -1] for a in asked] + [test.mse[:, -1]],
                            1)
    asked_ssim = torch.stack([a.ssim[:, -1] for a in asked] + [test.ssim[:, -1]], 1)
    probe_set = train_set[:probe_images]
    probe = encode_all(model, probe_set.images, k_max, device, probe_set.objects,
                       score="none") if test_set.labels else None  # probes need labels
    if not distributed.is_main():  # the encodings were shared; the rest is rank 0's
        return {}
    floats = [min(k * floats_per_token, test_set.images[0].numel()) for k in range(1, k_max + 1)]
    x = to_signed(test_set.images)
    pca = scores(x, pca_reconstructions(train_set.images, test_set.images, floats))
    c, h, w = test_set.images.shape[1:]
    result = {"tokens": list(range(1, k_max + 1)), "floats": floats,
              "test_images": len(test_set), "image": {"channels": c, "height": h, "width": w},
              "vle": summary(test.mse, test.ssim), "vle_asked_k": summary(asked_mse, asked_ssim),
              "pca": summary(pca["mse"], pca["ssim"]),
              "separation": separation_numbers(probe, probe_set, test, test_set,
                                               floats_per_token)}
    if test.masks is not None:
        result["masks"] = {"collapse_share": collapse_share(test.masks)}
        if test_set.objects is not None:
            result["masks"].update(fg_ari=fg_ari(test.masks, test_set.objects).nanmean().item(),
                                   count_accuracy=count_accuracy(test.masks, test_set.objects))
    return result


def _save_rows(columns: list[torch.Tensor], path: Path) -> None:
    """Save a grid whose rows are images and whose columns are `columns`, each (B, C, H, W)
    in [-1, 1]."""
    grid = torch.stack(columns, 1).flatten(0, 1)
    save_image((grid.cpu().clamp(-1, 1) + 1) / 2, path, nrow=len(columns), padding=1)


@torch.no_grad()
def write_grids(model: VLE, images: torch.Tensor, k: int, device: torch.device, grid: Path,
                masks: Path) -> None:
    """One pass over `images`: `grid` gets the input and the reconstruction after each token;
    for a model with masks, `masks` gets the input and each token's mask and masked part."""
    model.eval()
    x = to_signed(images).to(device)
    out = model(x, k)
    _save_rows([x, *out.recons.unbind(1)], grid)
    if out.masks is not None:
        shown = out.masks.expand(-1, -1, x.shape[1], -1, -1)
        _save_rows([x, *[c for m, p in zip(shown.unbind(1), out.parts.unbind(1))
                         for c in (m * 2 - 1, m * p - (1 - m))]], masks)


def write_json(result: dict, path: Path) -> None:
    path.write_text(json.dumps(result, indent=2))


def write_evaluation(model: VLE, recipe: Recipe, train_set: ImageSet, test_set: ImageSet,
                     device: torch.device, folder: RunDir, title: str) -> dict:
    """Evaluate and write eval.json, the figures, the grids and report.html into `folder`."""
    result = evaluate(model, train_set, test_set, k_max=recipe.eval_tokens,
                      floats_per_token=recipe.model.token.floats, device=device,
                      probe_images=recipe.eval.probe_images)
    if not distributed.is_main():
        return result
    result.update(recipe=recipe.recipe.name, data=recipe.data.use)
    folder.path.mkdir(parents=True, exist_ok=True)
    write_json(result, folder.eval_json)
    report.write_curve_plot(result, title, folder.curve_png)
    report.write_similarity_plot(result, title, folder.similarity_png)
    report.write_probe_plot(result, title, folder.probe_png)
    write_grids(model, test_set.images[:recipe.train.grid_images], recipe.eval_tokens, device,
                folder.grid_png, folder.masks_png)
    report.write_report(result, dump_recipe(recipe), title, folder.path)
    return result
