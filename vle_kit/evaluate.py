"""Per-token evaluation: test MSE and PSNR after k = 1..K tokens, beside PCA of equal size."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from matplotlib.figure import Figure  # the object API: no GUI backend, nothing left open
from torchvision.utils import save_image

from vle_kit.decomposition import collapse_share, count_accuracy, fg_ari
from vle_kit.interfaces import ImageSet
from vle_kit.model import VLE

PEAK = 2.0  # images live in [-1, 1]


def to_signed(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1]."""
    return images.float().div_(127.5).sub_(1)


def psnr(mse: torch.Tensor) -> torch.Tensor:
    return 10 * torch.log10(PEAK**2 / mse.clamp_min(1e-12))


@torch.no_grad()
def encode_all(model: VLE, images: torch.Tensor, k: int, device: torch.device,
               batch: int = 250) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-image MSE (N, k) after each of the first k tokens of one k-token encoding, and the
    masks (N, k, H, W) where the model makes them."""
    model.eval()
    errors, masks = [], []
    for start in range(0, len(images), batch):
        x = to_signed(images[start:start + batch]).to(device)
        out = model(x, k)
        errors.append((out.recons - x[:, None]).pow(2).mean(dim=(2, 3, 4)).cpu())
        if out.masks is not None:
            masks.append(out.masks[:, :, 0].cpu())
    return torch.cat(errors), torch.cat(masks) if masks else None


@torch.no_grad()
def pca_curve(train: torch.Tensor, test: torch.Tensor, floats: list[int]) -> torch.Tensor:
    """Per-image test MSE (N, len(floats)) of PCA fitted on `train`, keeping `floats` components."""
    x = to_signed(train).flatten(1).double()
    mean = x.mean(0)
    x -= mean
    _, vectors = torch.linalg.eigh(x.T @ x)
    basis = vectors.flip(1)[:, :max(floats)]  # strongest components first
    t = to_signed(test).flatten(1).double() - mean
    coords = t @ basis
    return torch.stack([(coords[:, :f] @ basis[:, :f].T - t).pow(2).mean(1) for f in floats],
                       1).float()


def evaluate(model: VLE, train_images: torch.Tensor, test: ImageSet, *, k_max: int,
             floats_per_token: int, device: torch.device) -> dict:
    """The numbers of eval.json: VLE prefix curve, VLE asked for exactly k tokens, PCA, and
    for models with masks how they split the scenes."""
    prefix, masks = encode_all(model, test.images, k_max, device)
    asked = torch.stack([encode_all(model, test.images, k, device)[0][:, -1]
                         for k in range(1, k_max)] + [prefix[:, -1]], 1)
    floats = [min(k * floats_per_token, train_images[0].numel()) for k in range(1, k_max + 1)]
    pca = pca_curve(train_images, test.images, floats)

    def summary(per_image: torch.Tensor) -> dict:
        return {"mse": per_image.mean(0).tolist(), "psnr": psnr(per_image).mean(0).tolist()}

    result = {"tokens": list(range(1, k_max + 1)), "floats": floats,
              "test_images": len(test), "vle": summary(prefix),
              "vle_asked_k": summary(asked), "pca": summary(pca)}
    if masks is not None:
        result["masks"] = {"collapse_share": collapse_share(masks)}
        if test.objects is not None:
            result["masks"].update(fg_ari=fg_ari(masks, test.objects).nanmean().item(),
                                   count_accuracy=count_accuracy(masks, test.objects))
    return result


def write_curve_plot(result: dict, title: str, path: Path) -> None:
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    k = result["tokens"]
    ax.plot(k, result["vle"]["mse"], "o-", label="VLE, first k of K tokens")
    ax.plot(k, result["vle_asked_k"]["mse"], "s--", label="VLE, asked for k tokens")
    ax.plot(k, result["pca"]["mse"], "^:", label="PCA, same number of floats")
    ax.set_yscale("log")
    ax.set_xlabel("tokens k")
    ax.set_ylabel("test MSE ([-1, 1] scale)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


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
