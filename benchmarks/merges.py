"""Where a mask model's FG-ARI goes: which pairs of objects one token takes together (by
whether they touch, by the smaller one's area) and the FG-ARI by how many objects a scene has.

    python -m benchmarks.merges RUN_DIR [--k 8]

Every pair of objects in a held-out scene counts as merged when one mask (not the leftover)
holds most of both (`decomposition.main_masks`). Prints a table and writes merges.json in the
run directory.
"""

from __future__ import annotations

import argparse
import json

import torch
import torch.nn.functional as F
from torch import Tensor

from vle_kit.build import load_data, load_run
from vle_kit.decomposition import fg_ari, main_masks
from vle_kit.evaluate import encode_all

AREAS = (0, 20, 40, 80)  # pixels: the smaller object's area, lower bounds of the bins


def object_pairs(masks: Tensor, objects: Tensor) -> dict[str, Tensor]:
    """Every pair of objects present in a scene (P,): whether one mask holds most of both
    (`merged`), whether they touch (a pixel of one is among the 8 neighbours of the other's),
    and the smaller one's area in pixels; and how many objects each scene has (N,)."""
    token, present, count = main_masks(masks, objects)
    ids = F.one_hot(objects, token.shape[1] + 1)[..., 1:].permute(0, 3, 1, 2).float()
    near = (F.max_pool2d(ids, 3, 1, 1).flatten(2) @ ids.flatten(2).transpose(1, 2)) > 0
    area = ids.flatten(2).sum(2)
    a, b = torch.triu_indices(token.shape[1], token.shape[1], 1)
    both = present[:, a] & present[:, b]
    merged = (token[:, a] == token[:, b]) & (token[:, a] < count - 1)
    return {"merged": merged[both], "touching": near[:, a, b][both],
            "smaller_area": torch.minimum(area[:, a], area[:, b])[both],
            "objects": present.sum(1)}


def breakdown(masks: Tensor, objects: Tensor) -> dict:
    """The share of pairs merged, apart and touching and by the smaller object's area, and the
    FG-ARI by the number of objects in a scene."""
    pairs = object_pairs(masks, objects)
    merged = pairs["merged"].float()

    def share(where: Tensor) -> dict:
        return {"pairs": int(where.sum()), "merged": merged[where].mean().item()}

    edges = (*AREAS[1:], float("inf"))
    by_area = {f"{lo}-{hi}": share((pairs["smaller_area"] >= lo) & (pairs["smaller_area"] < hi))
               for lo, hi in zip(AREAS, edges)}
    scores, count = fg_ari(masks, objects), pairs["objects"]
    by_count = {int(n): {"scenes": int((count == n).sum()),
                         "fg_ari": scores[count == n].nanmean().item()} for n in count.unique()}
    return {"all": share(torch.ones_like(pairs["merged"])), "touching": share(pairs["touching"]),
            "apart": share(~pairs["touching"]), "smaller_area": by_area, "objects": by_count}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--k", type=int, default=8)
    args = parser.parse_args(argv)
    trained = load_run(args.run)
    _, test = load_data(trained.recipe, trained.registry)
    encoded = encode_all(trained.model, test.images, args.k, trained.device, score="none")
    result = breakdown(encoded.masks, test.objects.long())
    print("| pairs of objects | pairs | merged |\n| --- | --- | --- |")
    for name in ("all", "touching", "apart"):
        print(f"| {name} | {result[name]['pairs']} | {result[name]['merged']:.3f} |")
    for name, row in result["smaller_area"].items():
        print(f"| the smaller {name} px | {row['pairs']} | {row['merged']:.3f} |")
    print("\n| objects in the scene | scenes | FG-ARI |\n| --- | --- | --- |")
    for n, row in result["objects"].items():
        print(f"| {n} | {row['scenes']} | {row['fg_ari']:.3f} |")
    (trained.run.path / "merges.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
