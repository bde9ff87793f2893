"""Train recipes as a user would (`vle-kit run`, defaults unless --set), time them, and
tabulate their per-token curves beside PCA, over one or more seeds.

    python -m benchmarks.recipes recipes/vanilla.toml [more recipes] [--seeds 0 1 2]
        [--set KEY=VALUE ...] [--name NAME] [--photos [--stride N]] [--isa avx2] [--parallel]
        [--add]

Each run is a `vle-kit run` in a process of its own, timed from start to end (training and
evaluation), with the float32 matmul rate measured just before and after (`matmul_gflops`:
the same kind of host drifts by a third). `--seeds` changes train.seed (initial weights and
batch order; the data stay the same); `--photos` trains and tests on real photographs
(benchmarks/photos.py: patches of different photographs on each side, one every `--stride`
pixels, 12 by default: set data.train to match a smaller stride); `--isa avx2` runs under the
AVX2 kernels; `--add` keeps the entry's runs of other seeds (a timed seed-0 run, then `--seeds
1 2 --parallel --add`). Prints a table per entry (mean over seeds, and the spread where there
are several) and updates benchmarks/results/recipes.json (entries of other names are kept).
A run that fails is left out of its entry and named in the error it exits with; the runs that
finished are saved (`--add` with the failed seed adds it later).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from benchmarks.photos import write_patches
from benchmarks.speed import apart, environment, matmul_rate
from vle_kit.host import AVX2_KERNELS
from vle_kit.report import markdown
from vle_kit.results import Evaluation
from vle_kit.runs import RunDir, RunInfo

RESULTS = Path(__file__).parent / "results"
PHOTOS = ["data.use='image_folder'", "data.train=3000", "data.test=1000"]


def run_recipe(recipe: str, overrides: list[str], isa: str = "native",
               parallel: bool = False) -> dict:
    """One `vle-kit run` of `recipe`: its wall time, host and every number of its eval.json.
    With `parallel` it runs on one thread, beside another run: its time is then not a timing."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    runs = Path(tempfile.mkdtemp(prefix="runs_", dir=RESULTS))
    kernels = AVX2_KERNELS if isa == "avx2" else {}
    env = {**os.environ, **kernels, **({"OMP_NUM_THREADS": "1"} if parallel else {})}
    before = None if parallel else matmul_gflops(kernels)
    started = time.perf_counter()
    cmd = [sys.executable, "-m", "vle_kit", "run", recipe, "--runs", str(runs)]
    code = subprocess.run(cmd + [a for o in overrides for a in ("--set", o)], env=env,
                          stdout=subprocess.DEVNULL).returncode
    if code:
        raise RunFailed(f"{recipe} {' '.join(overrides)}: vle-kit run exited {code}; what it "
                        f"saved is under {runs} (`vle-kit run --resume` continues a run)")
    seconds = time.perf_counter() - started
    (path,) = runs.iterdir()
    return {**entry(path, recipe, overrides, seconds, timed=not parallel),
            "matmul_gflops": None if parallel else [before, matmul_gflops(kernels)]}


def matmul_gflops(kernels: dict[str, str]) -> float:
    """This host's float32 matmul rate in GFLOP/s, measured in a fresh process with the
    `kernels` variables set (the run's): timed runs record it before and after, since the same
    kind of host moves by a third from day to day and the issues' minutes are for about 140."""
    with environment(kernels):
        return round(apart(matmul_rate, torch.device("cpu")) / 1e9, 1)


def entry(path: Path, recipe: str, overrides: list[str] | str | None,
          wall_seconds: float | None, timed: bool) -> dict:
    """What recipes.json (and ablation.json) keep of a finished run: how it was made, its time
    and host (from run.json; None for runs older than it) and every number of its eval.json."""
    run = RunDir(path)
    info = RunInfo.read(run)
    return {"recipe": recipe, "overrides": overrides, "run": str(path),
            "wall_seconds": None if wall_seconds is None else round(wall_seconds, 1),
            "train_seconds": round(info.train_seconds, 1) if info else None,
            "timed": timed, "host": info.host if info else None,
            "eval": json.loads(run.eval_json.read_text())}


class RunFailed(Exception):
    """A `vle-kit run` of the benchmark exited with an error."""


def run_all(jobs: list[tuple[str, list[str]]], isa: str,
            parallel: bool) -> tuple[list[dict | None], list[str]]:
    """run_recipe for every (recipe, overrides) job, two at a time on one thread each with
    `parallel` (twice the runs an hour on 2 cores; the times are then not timings). Returns
    each job's entry, None where its run failed, and what went wrong in each that failed: a
    run that fails does not lose the others' hours."""
    with ThreadPoolExecutor(2 if parallel else 1) as pool:
        futures = [pool.submit(run_recipe, *job, isa, parallel) for job in jobs]
    entries, failed = [], []
    for future in futures:
        try:
            entries.append(future.result())
        except RunFailed as e:
            entries.append(None)
            failed.append(str(e))
    return entries, failed


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
    augmented = first.pca_augmented  # PCA fitted on the training images as the run saw them
    rows = []  # each a {column: cell} dict, so the header is the first row's keys
    for i, k in enumerate(first.tokens):
        vle = [r.vle.mse[i] for r in results]
        mean = statistics.fmean(vle)
        row = {"k": str(k), "prefix MSE": spread(vle),
               "asked-k MSE": spread([r.vle_asked_k.mse[i] for r in results]),
               "PCA MSE": f"{first.pca.mse[i]:.4f}",
               "prefix / PCA": f"{mean / first.pca.mse[i]:.2f}"}
        if augmented:
            row |= {"PCA MSE, augmented": f"{augmented.mse[i]:.4f}",
                    "prefix / it": f"{mean / augmented.mse[i]:.2f}"}
        if len(results) > 1:  # the worst seed's prefix too: the bar is a run's
            row["prefix / PCA, worst seed"] = f"{max(vle) / first.pca.mse[i]:.3f}"
        row["improved (worst seed)"] = f"{min(r.vle.improved[i] for r in results):.1%}"
        rows.append(row)
    timed = [e["wall_seconds"] / 60 for e in entries if e["timed"]]
    rates = [r for e in entries if e["timed"] for r in e.get("matmul_gflops") or ()]
    matmul = f"; matmul {min(rates):.0f}-{max(rates):.0f} GFLOP/s" if rates else ""
    minutes = (f"{spread(timed, 1)} min each (training and evaluation{matmul})" if timed else
               "run two at a time on one thread each (no timing)")
    lines = [f"{name}: {len(entries)} seed(s), {minutes}, {entries[0]['host']['cpu']}, "
             f"{entries[0]['host']['aten_isa']} kernels",
             (list(rows[0]), [list(row.values()) for row in rows])]
    if first.masks is not None and first.masks.fg_ari is not None:
        merged = [r.masks.merged_share for r in results]  # None in runs from before it
        lines.append(f"FG-ARI {spread([r.masks.fg_ari for r in results], 3)}, count accuracy "
                     f"{spread([r.masks.count_accuracy for r in results], 3)}, "
                     + ("" if None in merged else f"merged objects {spread(merged, 3)}, ")
                     + f"collapse {spread([r.masks.collapse_share for r in results], 3)}, "
                     f"largest off-diagonal token similarity "
                     f"{spread([most_similar(r) for r in results], 3)}"
                     + _later_measures(results))
    return markdown(lines)


def _later_measures(results: list[Evaluation]) -> str:
    """The mask measures runs made before them lack: thin parts and other pixels missed,
    silence resumed, images with too many and too few masks, the token an object's label
    tells."""
    missed = [r.masks.missed_pixels for r in results]
    resumed = [r.masks.resumed_share for r in results]
    told = [r.masks.label_tells_token for r in results]
    text = "" if None in missed else "".join(
        f", {part} missed {spread([m[part] for m in missed], 3)}" for part in missed[0])
    text += "" if None in resumed else f", silence resumed {spread(resumed, 3)}"
    errors = [r.masks.count_errors for r in results]
    text += "" if None in errors else "".join(
        f", {side} masks {spread([e[side] for e in errors], 3)}" for side in errors[0])
    if None not in told:
        text += "".join(f", {label} tells the token {spread([t[label] for t in told], 3)}"
                        for label in told[0])
    return text


def most_similar(result: Evaluation) -> float:
    """The largest mean cosine similarity between two different tokens of an image."""
    matrix = result.separation["similarity"]["matrix"]
    return max(v for i, row in enumerate(matrix) for j, v in enumerate(row) if i != j)


def kept_runs(entries: list[dict], recipe: str, overrides: list[str],
               seeds: list[int]) -> list[dict]:
    """The runs of an entry that --add keeps: those of other seeds; the entry must have been
    made from the same recipe and settings, or its seeds would not be comparable."""
    kept = []
    for entry in entries:
        *settings, seed = entry["overrides"]
        if entry["recipe"] != recipe or settings != overrides:
            sys.exit(f"error: --add: the entry was made with {entry['recipe']} "
                     f"{' '.join(settings)}, not {recipe} {' '.join(overrides)}")
        if int(seed.removeprefix("train.seed=")) not in seeds:
            kept.append(entry)
    return kept


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipes", nargs="+")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--name", help="the entry's name in recipes.json (the recipe's)")
    parser.add_argument("--photos", action="store_true", help="real photographs, not shapes")
    parser.add_argument("--stride", type=int, default=12,
                        help="pixels between the photographs' patches (with --photos)")
    parser.add_argument("--isa", choices=("native", "avx2"), default="native")
    parser.add_argument("--parallel", action="store_true",
                        help="two runs at a time, one thread each (quality only, no timing)")
    parser.add_argument("--add", action="store_true",
                        help="keep the entry's runs of other seeds (same recipe and --set)")
    args = parser.parse_args(argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    overrides = list(args.overrides)
    if args.photos:
        root = Path(tempfile.mkdtemp(prefix=f"vle_photos_stride{args.stride}_"))  # in overrides
        write_patches(root, stride=args.stride)
        overrides = PHOTOS + [f"data.root='{root}'"] + overrides
    out, failures = RESULTS / "recipes.json", []
    for recipe in args.recipes:
        name = args.name or Path(recipe).stem + ("_photos" if args.photos else "")
        earlier = load(out).get(name, [])
        kept = kept_runs(earlier, recipe, overrides, args.seeds) if args.add else []
        done, failed = run_all([(recipe, overrides + [f"train.seed={s}"]) for s in args.seeds],
                               args.isa, args.parallel)
        failures += failed
        finished = [e for e in done if e is not None]
        if finished:
            entries = kept + finished
            print(table(name, entries), end="\n\n")
            save(out, name, entries)
            print(f"wrote {name} in {out}")
    exit_with(failures)


def exit_with(failures: list[str]) -> None:
    """Exit with an error line for each run that failed, if any did (the others saved)."""
    if failures:
        sys.exit("error: " + "\nerror: ".join(failures))


def load(out: Path) -> dict:
    """recipes.json as it is now (read again before each write: another benchmark may be
    running beside this one)."""
    return json.loads(out.read_text()) if out.exists() else {}


def save(out: Path, name: str, entries: list[dict]) -> None:
    """Write `entries` under `name` into `out` (recipes.json, ablation.json), keeping the other
    entries: read and written under a lock, so that two benchmarks finishing at once do not
    drop each other's entry."""
    with open(out.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        out.write_text(json.dumps({**load(out), name: entries}, indent=2))


if __name__ == "__main__":
    main()
