"""How well masks split a scene into its objects: FG-ARI, object count, merged objects, the
collapse pattern, the pixels missed in objects' thin parts and elsewhere; and whether tokens
take the objects in turn, then fall silent, or are slots for kinds of object (silence
resumed, the token an object's label tells)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def winners(masks: Tensor) -> Tensor:
    """(N, K, 1, H, W) masks -> (N, H, W): the mask holding most of each pixel, or K where
    what no mask claimed (1 - their sum) holds more; ties go to the first. The largest mask
    is found in one pass and only then compared with the leftover: an argmax over the masks
    and the leftover stacked takes nine times as long, and every mask measure calls this."""
    best, index = masks[:, :, 0].max(1)
    leftover = (1 - masks.sum(1)[:, 0]).clamp_min(0)
    return torch.where(leftover > best, masks.shape[1], index)


def overlaps(masks: Tensor, objects: Tensor) -> Tensor:
    """(N, G, K + 1): how many foreground pixels of object g (g = 0, the background, counts
    none) each mask, or the leftover, wins the per-pixel argmax of."""
    pred = winners(masks)
    n, p = masks.shape[0], masks.shape[1] + 1
    g = int(objects.max()) + 1
    flat = (torch.arange(n)[:, None, None] * g + objects) * p + pred
    return torch.bincount(flat[objects > 0], minlength=n * g * p).view(n, g, p).double()


def fg_ari(masks: Tensor, objects: Tensor) -> Tensor:
    """Adjusted Rand index of the masks' per-pixel argmax against the true objects, on the
    foreground only (objects > 0), per image (N,); NaN for an image without foreground.

    masks: (N, K, 1, H, W) in [0, 1], not necessarily summing to 1 (a leftover cluster is
    added).
    objects: (N, H, W) integer ids, 0 = background.
    """
    counts = overlaps(masks, objects)

    def pairs(x: Tensor) -> Tensor:
        return (x * (x - 1)).flatten(1).sum(1)

    total = counts.flatten(1).sum(1)
    index = pairs(counts)
    a, b = pairs(counts.sum(2)), pairs(counts.sum(1))
    expected = a * b / (total * (total - 1)).clamp_min(1)
    best = (a + b) / 2
    ari = (index - expected) / (best - expected)
    ari = torch.where(best == expected, torch.ones_like(ari), ari)
    return torch.where(total > 0, ari, torch.full_like(ari, float("nan")))


def main_masks(masks: Tensor, objects: Tensor) -> tuple[Tensor, Tensor, int]:
    """Each object's main mask, the one (or the leftover, index K) holding most of its pixels
    (N, G - 1); which objects the image has (N, G - 1) bool; and K + 1, the masks counted."""
    counts = overlaps(masks, objects)[:, 1:]  # (N, G - 1, K + 1), objects only
    return counts.argmax(2), counts.sum(2) > 0, counts.shape[2]


def merged_share(masks: Tensor, objects: Tensor) -> float:
    """Share of the objects whose main mask (the one holding most of their pixels) is also
    another object's main mask in the same image: objects a token took together. FG-ARI falls
    both for these and for objects split across tokens; this tells the merges apart."""
    token, present, count = main_masks(masks, objects)
    main = F.one_hot(token, count) * present[..., None]
    shared = (main.sum(1, keepdim=True) * main).sum(2) > 1  # (N, G - 1)
    return (shared.sum() / present.sum().clamp_min(1)).item()


def opening(masks: Tensor) -> Tensor:
    """(N, C, H, W) -> the 3 x 3 opening of each channel: the largest mask below it that is a
    union of 3 x 3 squares (grey-level: the min over each square, then the max), the image's
    edge eroding nothing."""
    eroded = -F.max_pool2d(-masks, 3, stride=1, padding=1)
    return F.max_pool2d(eroded, 3, stride=1, padding=1)


def missed_pixels(masks: Tensor, objects: Tensor) -> dict[str, float]:
    """Share of the foreground pixels outside their object's main mask, in the objects' thin
    parts (what a 3 x 3 opening of the object removes: corners, arms, strips left visible by
    occlusion) and elsewhere. At 32 pixels the thin parts are a seventh of the shapes' pixels
    and most of what tokens miss besides merged objects (README, "Mask models")."""
    token = main_masks(masks, objects)[0]
    main = torch.cat([torch.zeros_like(token[:, :1]), token], 1).gather(1, objects.flatten(1))
    missed = (winners(masks) != main.view_as(objects)) & (objects > 0)
    ids = F.one_hot(objects, int(objects.max()) + 1)[..., 1:].permute(0, 3, 1, 2).float()
    thin = (ids - opening(ids)).amax(1) > 0.5  # (N, H, W)
    rest = (objects > 0) & ~thin
    return {"thin parts": (missed & thin).sum().item() / max(thin.sum().item(), 1),
            "elsewhere": (missed & rest).sum().item() / max(rest.sum().item(), 1)}


def mask_area(masks: Tensor) -> Tensor:
    """(N, K, 1, H, W) -> (N, K): the share of the image where each mask is above 0.5."""
    return (masks > 0.5).flatten(2).float().mean(2)


def nonempty(masks: Tensor, min_share: float = 0.005) -> Tensor:
    """(N, K, 1, H, W) -> (N, K) bool: masks holding at least `min_share` of the image above
    0.5."""
    return mask_area(masks) >= min_share


def count_accuracy(masks: Tensor, objects: Tensor) -> float:
    """Share of images whose number of non-empty masks equals objects + 1 (the background)."""
    return (_count_difference(masks, objects) == 0).float().mean().item()


def count_errors(masks: Tensor, objects: Tensor) -> dict[str, float]:
    """Where count accuracy's misses go: the share of images with more non-empty masks than
    objects + 1 (slivers, split objects, a leftover beside the background) and with fewer
    (merged or missed objects)."""
    difference = _count_difference(masks, objects)
    return {"too many": (difference > 0).float().mean().item(),
            "too few": (difference < 0).float().mean().item()}


def _count_difference(masks: Tensor, objects: Tensor) -> Tensor:
    """(N,): non-empty masks less the regions (objects + 1) of each image."""
    return nonempty(masks).sum(1) - regions(objects)


def regions(objects: Tensor) -> Tensor:
    """(N,): how many ids each image of objects (N, H, W) holds: its objects and the
    background where it shows. One scatter, not a `unique` an image."""
    ids = objects.flatten(1).long()
    held = torch.zeros(len(ids), int(ids.max()) + 1, dtype=torch.bool, device=ids.device)
    return held.scatter_(1, ids, True).sum(1)


def collapse_share(masks: Tensor, full: float = 0.9, empty: float = 0.01) -> float:
    """Share of images where a mask covering over `full` of the image is followed by an empty
    one: the "one full mask, one empty mask" pattern of the notebook (Apr 4)."""
    area = mask_area(masks)
    pattern = (area[:, :-1] > full) & (area[:, 1:] < empty)
    return pattern.any(1).float().mean().item()


def resumed_share(masks: Tensor) -> float:
    """Share of images where a token claims something after an empty mask (the last token,
    which takes the rest under `scope`, aside): silence that does not last. Tokens that take
    the objects in turn fall silent once and stay so, and an adaptive length that stops at
    the first empty mask (`--min-mask`) loses nothing; tokens that are slots for kinds of
    object are silent wherever their kind is missing."""
    full = nonempty(masks)[:, :-1]
    silent_before = (~full).cumsum(1) > 0
    return (full[:, 1:] & silent_before[:, :-1]).any(1).float().mean().item()


def label_tells_token(masks: Tensor, objects: Tensor, labels: Tensor) -> float:
    """How well an object's label (N, G - 1; -1 = none; object i's label at column i - 1)
    tells which token holds it, beyond chance: the share of objects held by the token that
    holds most objects of their label, less the share of the token that holds most objects
    overall, over 1 less the latter. 0 when the label says nothing of the token (objects
    taken in turn), 1 when the tokens are slots for labels (token 3 draws the yellow and the
    orange objects), and FG-ARI then falls wherever two objects of one slot share a scene."""
    token, present, count = main_masks(masks, objects)
    label = labels[:, :token.shape[1]]
    held = present & (label >= 0)
    token, label = token[held], label[held]
    if not len(label):
        return 0.0
    kinds = int(label.max()) + 1
    table = torch.bincount(token * kinds + label, minlength=count * kinds)
    table = table.view(count, kinds).double()
    told, chance = table.max(0).values.sum() / len(label), table.sum(1).max() / len(label)
    return 0.0 if chance == 1 else ((told - chance) / (1 - chance)).item()
