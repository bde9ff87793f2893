"""What each change to the vanilla VLE buys: the default recipe with each change alone and the
changes together, every run at the default budget, prefix MSE per token beside PCA.

    python -m benchmarks.ablation [--only NAME ...] [--seeds 0] [--isa avx2] [--parallel]
    python -m benchmarks.ablation --record RUN_DIR ...
    python -m benchmarks.ablation --table

Every variant is `vle-kit run recipes/vanilla.toml` with the overrides listed in VARIANTS
(the first row undoes every change, so it is the recipe as it was). `--record` enters runs made
elsewhere with the same command (e.g. from a queue of experiments): each run's resolved
recipe says which variant it is, its run.json its host and time. Prints the table; updates
benchmarks/results/ablation.json; `--table` only prints what it holds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tomllib
from pathlib import Path

from benchmarks.recipes import RESULTS, entry, exit_with, load, run_all, save
from vle_kit.report import markdown
from vle_kit.results import Evaluation
from vle_kit.runs import RunDir, RunInfo

ROOT = Path(__file__).resolve().parent.parent
RECIPE = str(ROOT / "recipes" / "vanilla.toml")

# the changes, each as the overrides that turn it off or on against recipes/vanilla.toml;
# K = 8 every step comes with a batch of 18, the same token-images a step as K ~ U[1, 8] at 32;
# the decoder's step FiLM is applied after the decoder's table, so "decoder" off resets it;
# width 48 comes with 2800 steps, the minutes of 2200 at width 64; the linear maps with 2000,
# and width 32 (after them) with 2900, the minutes of the recipe with them (after BUDGET, so
# they win); width 48's OFF already sets 64; the decoder's linear map goes with its table;
# the learning rate of 3e-3 came next, then the schedule's end, then the averaged weights, then
# the training images' symmetries, then their channel orders too (after "flips"); then the
# second prefix weighted 2 and K = 8 drawn twice as often (2650 steps, the minutes of 2900)
OFF = {"loss": ["train.loss='mse'"], "gain": ["model.token.gain=false"],
       "decoder": ["model.decoder={use='plain'}"], "k": ["tokens.min=1", "train.batch=32"],
       "film": [], "memory 1x1": ["model.memory.kernel=3"], "memory 16": ["model.memory.hidden=32"],
       "width 48": ["model.width=64"], "linear": ["model.token.linear=false"], "width 32": [],
       "lr 3e-3": ["train.lr=2e-3"], "lr end 1%": ["train.lr_end=0.1"], "ema": ["train.ema=0"],
       "flips": ["train.augment=[]"], "channels": [], "second prefix x2": ["train.step_weights=[]"],
       "k8 twice": ["tokens.weights=[]"]}
ON = {"loss": ["train.loss='log_mse'"], "gain": ["model.token.gain=true"],
      "decoder": ["model.decoder={use='context'}"], "k": ["tokens.min=8", "train.batch=18"],
      "film": ["model.decoder.step_film=true"], "memory 1x1": ["model.memory.kernel=1"],
      "memory 16": ["model.memory.hidden=16"],
      "width 48": ["model.width=48", "train.steps=2800"],
      "linear": ["model.token.linear=true", "model.decoder.linear=true", "train.steps=2000"],
      "width 32": ["model.width=32", "train.steps=2900"], "lr 3e-3": ["train.lr=3e-3"],
      "lr end 1%": ["train.lr_end=0.01"], "ema": ["train.ema=0.99"],
      "flips": ["train.augment=['flips']"], "channels": ["train.augment=['flips', 'channels']"],
      "second prefix x2": ["train.step_weights=[1.0, 2.0]"],
      "k8 twice": ["tokens.weights=[1, 1, 1, 1, 1, 1, 1, 2]", "train.steps=2650"]}
# the recipe with the training images flipped: what the variants after it add to
FLIPPED = ("log-MSE + gain + step FiLM + memory of 16 + linear maps + width 32 + learning rate"
           " 3e-3 + weights averaged + images flipped")
FLIPPED_CHANGES = ["loss", "gain", "film", "memory 16", "linear", "width 32", "lr 3e-3", "ema",
                   "flips"]
VARIANTS = {
    "none (the recipe before)": [],
    "log-MSE objective": ["loss"],
    "gain-shape tokens": ["gain"],
    "context decoder": ["decoder"],
    "log-MSE + gain": ["loss", "gain"],
    "log-MSE + context decoder": ["loss", "decoder"],
    "log-MSE + gain + context decoder": ["loss", "gain", "decoder"],
    "log-MSE + gain, K = 8 every step": ["loss", "gain", "k"],
    "log-MSE + gain + step FiLM in the decoder": ["loss", "gain", "film"],
    "log-MSE + gain + 1x1 memory": ["loss", "gain", "memory 1x1"],
    "log-MSE + gain + step FiLM + 1x1 memory": ["loss", "gain", "film", "memory 1x1"],
    "log-MSE + gain + step FiLM + memory of 16": ["loss", "gain", "film", "memory 16"],
    "log-MSE + gain + step FiLM + memory of 16 + width 48, 2800 steps":
        ["loss", "gain", "film", "memory 16", "width 48"],
    "log-MSE + gain + step FiLM + memory of 16 + linear maps, 2000 steps":
        ["loss", "gain", "film", "memory 16", "linear"],
    "log-MSE + gain + step FiLM + memory of 16 + linear maps + width 32, 2900 steps":
        ["loss", "gain", "film", "memory 16", "linear", "width 32"],
    "log-MSE + gain + step FiLM + memory of 16 + linear maps + width 32 + learning rate 3e-3":
        ["loss", "gain", "film", "memory 16", "linear", "width 32", "lr 3e-3"],
    "log-MSE + gain + step FiLM + memory of 16 + linear maps + width 32 + learning rate 3e-3"
    " + cosine to 1% of it":
        ["loss", "gain", "film", "memory 16", "linear", "width 32", "lr 3e-3", "lr end 1%"],
    "log-MSE + gain + step FiLM + memory of 16 + linear maps + width 32 + learning rate 3e-3"
    " + weights averaged (EMA 0.99)":
        ["loss", "gain", "film", "memory 16", "linear", "width 32", "lr 3e-3", "ema"],
    FLIPPED: FLIPPED_CHANGES,
    FLIPPED + " + their channels reordered": FLIPPED_CHANGES + ["channels"],
    FLIPPED + " + the second prefix weighted 2": FLIPPED_CHANGES + ["second prefix x2"],
    FLIPPED + " + K = 8 twice as often, 2650 steps": FLIPPED_CHANGES + ["k8 twice"],
    FLIPPED + " + the second prefix weighted 2 + K = 8 twice as often, 2650 steps":
        FLIPPED_CHANGES + ["second prefix x2", "k8 twice"],
}


BUDGET = ["train.steps=2400"]  # the table's, from before the recipe's cut to 2200 steps


def overrides(changes: list[str]) -> list[str]:
    return BUDGET + [o for c in OFF for o in (ON[c] if c in changes else OFF[c])]


def changes_of(recipe: dict) -> set[str]:
    """Which of the changes a resolved recipe (a run's recipe.toml) has on."""
    on = {"loss": recipe["train"]["loss"] == "log_mse",
          "gain": recipe["model"]["token"]["gain"],
          "decoder": recipe["model"]["decoder"]["use"] == "context",
          "k": recipe["tokens"]["min"] == recipe["tokens"]["max"],
          "film": recipe["model"]["decoder"].get("step_film", False),
          "memory 1x1": recipe["model"]["memory"].get("kernel", 3) == 1,
          "memory 16": recipe["model"]["memory"].get("hidden", 32) == 16,
          "width 48": recipe["model"]["width"] == 48, "width 32": recipe["model"]["width"] == 32,
          "lr 3e-3": recipe["train"]["lr"] == 3e-3,
          "lr end 1%": recipe["train"].get("lr_end", 0.1) == 0.01,
          "ema": recipe["train"].get("ema", 0.0) == 0.99,
          "flips": "flips" in recipe["train"].get("augment", []),
          "channels": "channels" in recipe["train"].get("augment", []),
          "second prefix x2": recipe["train"].get("step_weights", []) == [1.0, 2.0],
          "k8 twice": recipe["tokens"].get("weights", []) == [1, 1, 1, 1, 1, 1, 1, 2]}
    token, decoder = (recipe["model"][t].get("linear", False) for t in ("token", "decoder"))
    on["linear"] = token and decoder
    on["one linear map"] = token != decoder  # in no variant: such a run is not one of them
    return {c for c, v in on.items() if v}


def recorded(path: Path) -> tuple[str, dict]:
    """The variant and the entry of a run made outside this module (never counted a timing)."""
    run = RunDir(path)
    recipe = tomllib.loads(run.recipe.read_text())
    name = next((n for n, c in VARIANTS.items() if set(c) == changes_of(recipe)), None)
    if name is None or not run.eval_json.exists():
        sys.exit(f"error: {path}: not a finished run of one of the variants")
    info = RunInfo.read(run)
    return name, entry(path, RECIPE, info.command if info else None,
                       info.train_seconds if info else None, timed=False)


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
    p.add_argument("--record", nargs="+", type=Path, metavar="RUN_DIR", default=[],
                   help="enter these finished runs instead of training")
    p.add_argument("--table", action="store_true", help="print the table, train nothing")
    args = p.parse_args(argv)
    out = RESULTS / "ablation.json"
    saved = load(out)
    for path in args.record:
        name, entry = recorded(path)
        saved[name] = [e for e in saved.get(name, []) if e["run"] != str(path)] + [entry]
        save(out, name, saved[name])
    wanted = [n for n in VARIANTS if not args.only or n in args.only]
    names = [] if args.record or args.table else wanted
    jobs = [(RECIPE, overrides(VARIANTS[n]) + [f"train.seed={s}"])
            for n in names for s in args.seeds]
    results, failures = run_all(jobs, args.isa, args.parallel)  # one pool for every variant
    done = iter(results)
    for name in names:
        finished = [e for e in (next(done) for _ in args.seeds) if e is not None]
        if finished:
            saved[name] = finished
            save(out, name, finished)
    if not saved:
        exit_with(failures)
        sys.exit(f"error: {out} holds no run yet: train the variants first")
    k = len(next(iter(saved.values()))[0]["eval"]["tokens"])
    pca = next(iter(saved.values()))[0]["eval"]["pca"]["mse"]
    rows = [row(name, saved[name]) for name in VARIANTS if name in saved]
    rows.append(["PCA, same floats", *(f"{m:.4f}" for m in pca), "1.00", "", "", ""])
    print(markdown([(["change", *(f"k={i}" for i in range(1, k + 1)), f"/ PCA at k={k}",
                      "below PCA at every k", "improved, worst k", "minutes"], rows)]))
    if not args.table:
        print(f"wrote {out}")
    exit_with(failures)


if __name__ == "__main__":
    main()
