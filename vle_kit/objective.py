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


def in_loss_units(per_image: Tensor, loss: str) -> tuple[Tensor, Tensor | None]:
    """Each image's error at each step (B, K) as the loss `loss` measures it, and the scale
    (K,) a change of it is divided by, or None: the log of each error for log_mse_image; for
    log_mse the errors as they are and the whole batch's mean at each step (over every rank),
    the derivative of the log of that mean."""
    if loss == "log_mse_image":
        return per_image.clamp_min(1e-8).log(), None
    if loss == "log_mse":
        return per_image, distributed.mean(per_image.mean(0).detach()).clamp_min(1e-8)
    return per_image, None


def log_of_batch_mean(local: Tensor, whole: Tensor) -> Tensor:
    """log of the mean `whole` over the whole batch, of which `local` is this rank's mean,
    with its gradient: each rank's term is its mean over the whole batch's, so the ranks'
    averaged gradients are the gradient of the log of the whole batch's mean, as in one
    process."""
    return whole.log() + (local - local.detach()) / whole


def image_rise(errors: Tensor, scale: Tensor | None = None) -> Tensor:
    """How much each image's error (B, K) rises from one step to the next, each step's rise
    divided by its `scale` (K,) if given, averaged over images and steps: zero when every
    token helps every image. The earlier error is held fixed, so only the later token is
    pushed down."""
    rise = (errors[:, 1:] - errors[:, :-1].detach()).relu()
    return (rise if scale is None else rise / scale[1:]).mean()


def objective(out: Output, images: Tensor, recipe: Recipe, step: int,
              mask_losses: list[tuple[str, MaskLoss]] = ()) -> dict[str, Tensor]:
    """The loss of a training step at `step` on `images` (B, C, H, W) in [-1, 1], under the
    key "loss", beside every term it sums (scalars)."""
    per_image = (out.recons.float() - images[:, None]).pow(2).mean(dim=(2, 3, 4))  # (B, K)
    errors, scale = in_loss_units(per_image, recipe.train.loss)
    per_step = errors.mean(0)
    if recipe.train.loss == "log_mse":
        per_step = log_of_batch_mean(per_step, scale)
    weights = recipe.train.step_weights[:len(per_step)]
    weights += (1.0,) * (len(per_step) - len(weights))
    weighted = per_step * per_step.new_tensor(weights)
    terms = {"final": per_step[-1], "steps": weighted.mean()}
    loss = terms["final"] + recipe.train.step_loss * terms["steps"]
    if recipe.train.rise and per_image.shape[1] > 1:
        terms["rise"] = image_rise(errors, scale)
        loss = loss + recipe.train.rise * terms["rise"]
    if out.kl is not None:  # per image value, the scale of the MSE
        terms["kl"] = out.kl.float().mean() / images[0].numel()
        loss = loss + recipe.model.token.kl_weight * terms["kl"]
    masks = None if out.masks is None else out.masks.float()  # once, for every mask loss
    parts = out.parts.float() if any(m.reads_parts for _, m in mask_losses) else None
    for name, mask_loss in mask_losses if masks is not None else ():
        cfg = mask_loss.cfg
        ramp = min(1.0, (step + 1) / cfg.warmup) if cfg.warmup else 1.0
        terms[name] = value = mask_loss(masks, images, parts)
        loss = loss + cfg.weight * ramp * value
    return {"loss": loss, **terms}
