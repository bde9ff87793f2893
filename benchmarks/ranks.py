"""Training images per second on 1, 2, ... torchrun ranks of this machine (gloo on the CPU).

    python -m benchmarks.ranks [--recipe recipes/vanilla.toml] [--ranks 1 2] [--steps 60]

Each run trains the recipe for --steps steps under torchrun; the rate is taken from the
metrics' clock between the first logged step and the last (start-up and evaluation excluded).
Prints a table; writes benchmarks/results/ranks.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
ROOT = Path(__file__).resolve().parent.parent


def images_per_second(recipe: Path, ranks: int, steps: int, overrides: list[str]) -> dict:
    runs = Path(tempfile.mkdtemp())
    sets = [f"train.steps={steps}", "train.log_every=10", f"train.checkpoint_every={steps}",
            "data.train=4096", "data.test=100", "eval.probe_images=100", *overrides]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(ranks),
           "-m", "vle_kit", "run", str(recipe), "--runs", str(runs)]
    subprocess.run(cmd + [a for s in sets for a in ("--set", s)], check=True,
                   capture_output=True, text=True)
    (run,) = runs.iterdir()
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    timed = [r for r in rows if "seconds" in r]
    first, last = timed[0], timed[-1]
    batch = tomllib.loads((run / "recipe.toml").read_text())["train"]["batch"]
    rate = (last["step"] - first["step"]) * batch / (last["seconds"] - first["seconds"])
    return {"ranks": ranks, "images_per_s": rate, "batch": batch, "steps": steps}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipe", type=Path, default=ROOT / "recipes" / "vanilla.toml")
    p.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = p.parse_args(argv)
    rows = [images_per_second(args.recipe, n, args.steps, args.overrides) for n in args.ranks]
    base = rows[0]["images_per_s"]
    print(f"{args.recipe.name} on {os.cpu_count()} cores, global batch {rows[0]['batch']}\n"
          "| ranks | images/s | speed-up |\n|---|---|---|")
    for r in rows:
        print(f"| {r['ranks']} | {r['images_per_s']:.1f} | {r['images_per_s'] / base:.2f}x |")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "ranks.json"
    out.write_text(json.dumps({"recipe": str(args.recipe), "cores": os.cpu_count(),
                               "rows": rows, "overrides": args.overrides}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
