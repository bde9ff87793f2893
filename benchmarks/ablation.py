"""What each change to the vanilla VLE buys: the default recipe with each change alone and the
changes together, every run at the default budget, prefix MSE per token beside PCA.

    python -m benchmarks.ablation [--only NAME ...] [--seeds 0] [--isa avx2]

Every variant is `vle-kit run recipes/vanilla.toml` with the overrides listed in VARIANTS
(the first row undoes every change, so it is the recipe as it was). Prints the table;
updates benchmarks/results/ablation.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from benchmarks.recipes import RESULTS, run_all
from vle_kit.report import markdown
from vle_kit.results import Evaluation

ROOT = Path(__file__).resolve().parent.parent
RECIPE = str(ROOT / "recipes" / "vanilla.toml")

# the changes, each as the overrides that turn it off or on against recipes/vanilla.toml
OFF = {"loss": "train.loss='mse'", "gain": "model.token.gain=false",
       "decoder": "model.decoder={use='plain'}", "k": "tokens.min=1"}
ON = {"loss": "train.loss='log_mse'", "gain": "model.token.gain=true",
      "decoder": "model.decoder={use='context'}", "k": "tokens.min=8"}
VARIANTS = {
    "none (the recipe before)": [],
    "log-MSE objective": ["loss"],
    "gain-shape tokens": ["gain"],
    "context decoder": ["decoder"],
    "log-MSE + gain": ["loss", "gain"],
    "log-MSE + gain + context decoder": ["loss", "gain", "decoder"],
    "log-MSE + gain, K = 8 every step": ["loss", "gain", "k"],
}


def overrides(changes: list[str]) -> list[str]:
    return [ON[c] if c in changes else OFF[c] for c in OFF]


def row(name: str, entries: list[dict]) -> list[str]:
    results = [Evaluation.from_json(json.dumps(e["eval"])) for e in entries]
    mse = [statistics.fmean(r.vle.mse[i] for r in results) for i in range(len(results[0].tokens))]
    pca = results[0].pca.mse
    improved = min(min(r.vle.improved) for r in results)
    return [name, *(f"{m:.4f}" for m in mse), f"{mse[-1] / pca[-1]:.2f}",
            "yes" if all(m < p for m, p in zip(mse, pca)) else "no", f"{improved:.0%}",
            f"{statistics.fmean(e['wall_seconds'] for e in entries) / 60:.1f}"
            if all(e["timed"] for e in entries) else "-"]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="+", metavar="NAME", help="run these variants only")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--isa", choices=("native", "avx2"), default="native")
    p.add_argument("--parallel", action="store_true",
                   help="two runs at a time, one thread each (quality only, no timing)")
    args = p.parse_args(argv)
    out = RESULTS / "ablation.json"
    saved = json.loads(out.read_text()) if out.exists() else {}
    for name, changes in VARIANTS.items():
        if args.only and name not in args.only:
            continue
        saved[name] = run_all([(RECIPE, overrides(changes) + [f"train.seed={s}"])
                               for s in args.seeds], args.isa, args.parallel)
        RESULTS.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(saved, indent=2))
    k = len(next(iter(saved.values()))[0]["eval"]["tokens"])
    pca = next(iter(saved.values()))[0]["eval"]["pca"]["mse"]
    rows = [row(name, saved[name]) for name in VARIANTS if name in saved]
    rows.append(["PCA, same floats", *(f"{m:.4f}" for m in pca), "1.00", "", "", ""])
    print(markdown([(["change", *(f"k={i}" for i in range(1, k + 1)), f"/ PCA at k={k}",
                      "below PCA at every k", "improved, worst k", "minutes"], rows)]))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
