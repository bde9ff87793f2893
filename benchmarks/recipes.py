"""Train recipes as a user would (`vle-kit run`, defaults unless --set), time them, and
tabulate their per-token curves beside PCA, over one or more seeds.

    python -m benchmarks.recipes recipes/vanilla.toml [more recipes] [--seeds 0 1 2]
        [--set KEY=VALUE ...] [--name NAME] [--photos] [--isa avx2]

Each run is a `vle-kit run` in a process of its own, timed from start to end (training and
evaluation). `--seeds` changes train.seed (initial weights and batch order; the data stay the
same); `--photos` trains and tests on real photographs (benchmarks/photos.py: patches of
different photographs on each side); `--isa avx2` runs under the AVX2 kernels. Prints a table
per entry (mean over seeds, and the spread where there are several) and updates
benchmarks/results/recipes.json (entries of other names are kept).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.photos import write_patches
from vle_kit.host import AVX2_KERNELS
from vle_kit.report import markdown
from vle_kit.results import Evaluation
from vle_kit.runs import RunDir, RunInfo

RESULTS = Path(__file__).parent / "results"
PHOTOS = ["data.use='image_folder'", "data.train=3000", "data.test=1000"]


def run_recipe(recipe: str, overrides: list[str], isa: str = "native") -> dict:
    """One `vle-kit run` of `recipe`: its wall time, host and every number of its eval.json."""
    runs = RESULTS / "runs"
    before = set(runs.glob("*")) if runs.exists() else set()
    env = {**os.environ, **(AVX2_KERNELS if isa == "avx2" else {})}
    started = time.perf_counter()
    cmd = [sys.executable, "-m", "vle_kit", "run", recipe, "--runs", str(runs)]
    subprocess.run(cmd + [a for o in overrides for a in ("--set", o)], check=True, env=env)
    seconds = time.perf_counter() - started
    (path,) = set(runs.glob("*")) - before
    run = RunDir(path)
    info = RunInfo.read(run)
    return {"recipe": recipe, "overrides": overrides, "run": str(path),
            "wall_seconds": round(seconds, 1), "train_seconds": round(info.train_seconds, 1),
            "host": info.host, "eval": json.loads(run.eval_json.read_text())}


def spread(values: list[float], digits: int = 4) -> str:
    """The mean, with the half range over seeds when there are several."""
    mean = statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {(max(values) - min(values)) / 2:.{digits}f}"


def table(name: str, entries: list[dict]) -> str:
    """Per-token curve over the seeds of one entry, beside PCA; mask scores where present."""
    results = [Evaluation.from_json(json.dumps(e["eval"])) for e in entries]
    first = results[0]
    rows = []
    for i, k in enumerate(first.tokens):
        vle = [r.vle.mse[i] for r in results]
        rows.append([str(k), spread(vle), spread([r.vle_asked_k.mse[i] for r in results]),
                     f"{first.pca.mse[i]:.4f}",
                     f"{statistics.fmean(vle) / first.pca.mse[i]:.2f}",
                     f"{min(r.vle.improved[i] for r in results):.1%}"])
    minutes = spread([e["wall_seconds"] / 60 for e in entries], 1)
    lines = [f"{name}: {len(entries)} seed(s), {minutes} min each (training and evaluation), "
             f"{entries[0]['host']['cpu']}, {entries[0]['host']['aten_isa']} kernels",
             (["k", "prefix MSE", "asked-k MSE", "PCA MSE", "prefix / PCA",
               "improved (worst seed)"], rows)]
    if first.masks is not None and first.masks.fg_ari is not None:
        lines.append(f"FG-ARI {spread([r.masks.fg_ari for r in results], 3)}, count accuracy "
                     f"{spread([r.masks.count_accuracy for r in results], 3)}, collapse "
                     f"{spread([r.masks.collapse_share for r in results], 3)}, largest "
                     f"off-diagonal token similarity "
                     f"{spread([most_similar(r) for r in results], 3)}")
    return markdown(lines)


def most_similar(result: Evaluation) -> float:
    """The largest mean cosine similarity between two different tokens of an image."""
    matrix = result.separation["similarity"]["matrix"]
    return max(v for i, row in enumerate(matrix) for j, v in enumerate(row) if i != j)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipes", nargs="+")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--name", help="the entry's name in recipes.json (the recipe's)")
    parser.add_argument("--photos", action="store_true", help="real photographs, not shapes")
    parser.add_argument("--isa", choices=("native", "avx2"), default="native")
    args = parser.parse_args(argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    overrides = list(args.overrides)
    if args.photos:
        root = Path(tempfile.mkdtemp(prefix="vle_photos_"))
        write_patches(root)
        overrides = PHOTOS + [f"data.root='{root}'"] + overrides
    out = RESULTS / "recipes.json"
    saved = json.loads(out.read_text()) if out.exists() else {}
    for recipe in args.recipes:
        name = args.name or Path(recipe).stem + ("_photos" if args.photos else "")
        entries = [run_recipe(recipe, overrides + [f"train.seed={s}"], args.isa)
                   for s in args.seeds]
        saved[name] = entries
        print(table(name, entries), end="\n\n")
        out.write_text(json.dumps(saved, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
