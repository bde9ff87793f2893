"""What training minimises: one function from a forward pass to the loss and its terms.

    loss = final + train.step_loss * steps + train.rise * rise + kl_weight * kl
           + sum of weighted mask losses

`final` is the MSE after the last of the K tokens (notes, Apr 18: the final reconstruction of
the full input), `steps` the mean over all K steps of the MSE after that step, each times its
`train.step_weights` entry if it has one (the first steps' prefixes trained more); with
`train.loss = "log_mse"` both take the log of each MSE instead, so every token's relative
improvement counts alike and late tokens, whose errors are small, are not drowned out by early
ones; "log_mse_image" takes the log of each image's MSE, so every image's relative improvement
counts alike too. `rise` is how much any image's error rises from one token to the next (the
VLE's promise is that no token makes an image worse), in the units of the other terms. `kl` is
the KL term of a Gaussian token per image value; each mask loss ramps up linearly over its
`warmup` steps.
"""

from __future__ import annotations

from torch import Tensor

from vle_kit import distributed
from vle_kit.config import Recipe
from vle_kit.interfaces import MaskLoss
from vle_kit.model import Output


def log_of_batch_mean(local: Tensor) -> Tensor:
    """log of the mean over the whole batch, of which `local` is this rank's mean, with its
    gradient: each rank's term is its mean over the whole batch's, so the ranks' averaged
    gradients are the gradient of the log of the whole batch's mean, as in one process."""
    whole = distributed.mean(local.detach()).clamp_min(1e-8)
    return whole.log() + (local - local.detach()) / whole


def image_rise(per_image: Tensor, loss: str) -> Tensor:
    """How much each image's error (B, K) rises from one step to the next, averaged over images
    and steps, in the units the loss `loss` measures errors in: zero when every token helps
    every image. The earlier error is held fixed, so only the later token is pushed down."""
    before, after = per_image[:, :-1].detach(), per_image[:, 1:]
    if loss == "log_mse_image":
        return (after.clamp_min(1e-8).log() - before.clamp_min(1e-8).log()).relu().mean()
    rise = (after - before).relu()
    if loss == "log_mse":  # the log of the batch's mean: each step's rise relative to its mean
        rise = rise / distributed.mean(after.mean(0).detach()).clamp_min(1e-8)
    return rise.mean()


def objective(out: Output, images: Tensor, recipe: Recipe, step: int,
              mask_losses: list[tuple[str, MaskLoss]] = ()) -> dict[str, Tensor]:
    """The loss of a training step at `step` on `images` (B, C, H, W) in [-1, 1], under the
    key "loss", beside every term it sums (scalars)."""
    per_image = (out.recons.float() - images[:, None]).pow(2).mean(dim=(2, 3, 4))  # (B, K)
    if recipe.train.loss == "log_mse":
        per_step = log_of_batch_mean(per_image.mean(0))
    elif recipe.train.loss == "log_mse_image":
        per_step = per_image.clamp_min(1e-8).log().mean(0)
    else:
        per_step = per_image.mean(0)
    weights = recipe.train.step_weights[:len(per_step)]
    weights += (1.0,) * (len(per_step) - len(weights))
    weighted = per_step * per_step.new_tensor(weights)
    terms = {"final": per_step[-1], "steps": weighted.mean()}
    loss = terms["final"] + recipe.train.step_loss * terms["steps"]
    if recipe.train.rise and per_image.shape[1] > 1:
        terms["rise"] = image_rise(per_image, recipe.train.loss)
        loss = loss + recipe.train.rise * terms["rise"]
    if out.kl is not None:  # per image value, the scale of the MSE
        terms["kl"] = out.kl.float().mean() / images[0].numel()
        loss = loss + recipe.model.token.kl_weight * terms["kl"]
    for name, mask_loss in mask_losses if out.masks is not None else ():
        cfg = mask_loss.cfg
        ramp = min(1.0, (step + 1) / cfg.warmup) if cfg.warmup else 1.0
        terms[name] = value = mask_loss(out.masks.float(), images)
        loss = loss + cfg.weight * ramp * value
    return {"loss": loss, **terms}
