"""Train recipes with their defaults, time them, and tabulate their per-token curves.

    python -m benchmarks.recipes recipes/vanilla.toml [more recipes] [--set KEY=VALUE ...]

Prints one table per recipe (VLE after k tokens beside PCA keeping as many floats) and updates
benchmarks/results/recipes.json with the wall time and every number of each run's eval.json
(entries of recipes not run this time are kept).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

from vle_kit.report import curve_table, markdown
from vle_kit.results import Evaluation

RESULTS = Path(__file__).parent / "results"


def run_recipe(recipe: str, overrides: list[str]) -> dict:
    runs = RESULTS / "runs"
    before = set(runs.glob("*")) if runs.exists() else set()
    started = time.perf_counter()
    cmd = [sys.executable, "-m", "vle_kit", "run", recipe, "--runs", str(runs)]
    subprocess.run(cmd + [a for o in overrides for a in ("--set", o)], check=True)
    seconds = time.perf_counter() - started
    (run,) = set(runs.glob("*")) - before
    result = json.loads((run / "eval.json").read_text())
    return {"recipe": recipe, "overrides": overrides, "run": str(run),
            "wall_seconds": round(seconds, 1), "eval": result}


def table(entry: dict) -> str:
    e = Evaluation.from_json(json.dumps(entry["eval"]))
    vle = e.vle.mse
    falls = all(b < a for a, b in zip(vle, vle[1:]))
    return markdown([f"{entry['recipe']}: {entry['wall_seconds'] / 60:.1f} min wall, MSE falls "
                     f"with every token: {'yes' if falls else 'no'}", curve_table(e)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("recipes", nargs="+")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    entries = [run_recipe(r, args.overrides) for r in args.recipes]
    for entry in entries:
        print(table(entry), end="\n\n")
    machine = {"python": platform.python_version(), "torch": torch.__version__,
               "cpu_threads": torch.get_num_threads(), "machine": platform.machine()}
    out = RESULTS / "recipes.json"
    earlier = json.loads(out.read_text())["runs"] if out.exists() else []
    ran = {e["recipe"] for e in entries}
    runs = [e for e in earlier if e["recipe"] not in ran] + entries
    out.write_text(json.dumps({"machine": machine, "runs": runs}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
