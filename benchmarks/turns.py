"""What a training step of each recipe costs against the first's, stepped in turn in one process.

    python -m benchmarks.turns recipes/A.toml recipes/B.toml [--turns 4] [--steps 60] [--k 8]

Each turn runs `--steps` steps of every recipe in order. Noise that lasts longer than a turn
(other tenants, a host's clock) moves every recipe alike, so the median of each turn's ratio to
the first recipe says what a step costs against it; runs timed apart do not (the same host
drifts by a third between days). Set the AVX2 kernels' variables to measure under them.
"""

from __future__ import annotations

import argparse
import statistics
import time
from functools import partial
from pathlib import Path

from benchmarks.profile import trainer_for
from benchmarks.speed import sync
from vle_kit.host import describe, host_info


def step_turns(recipes: list[Path], turns: int = 4, steps: int = 60,
               k: int | None = None) -> dict[str, list[float]]:
    """Seconds a step of each recipe in each turn, by recipe path, after five warm-up steps."""
    trainers = [trainer_for(recipe, []) for recipe in recipes]
    steppers = [partial(t.train_step, k or t.recipe.tokens.max) for t in trainers]
    for step in steppers:
        for _ in range(5):
            step()
    seconds: dict[str, list[float]] = {str(r): [] for r in recipes}
    for _ in range(turns):
        for recipe, step in zip(recipes, steppers):
            sync()  # a GPU's queued work is timed where it runs
            started = time.perf_counter()
            for _ in range(steps):
                step()
            sync()
            seconds[str(recipe)].append((time.perf_counter() - started) / steps)
    return seconds


def main(argv: list[str] | None = None) -> dict[str, list[float]]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("recipes", type=Path, nargs="+")
    p.add_argument("--turns", type=int, default=4)
    p.add_argument("--steps", type=int, default=60, help="steps of each recipe a turn")
    p.add_argument("--k", type=int, help="tokens per step (each recipe's tokens.max)")
    args = p.parse_args(argv)
    seconds = step_turns(args.recipes, args.turns, args.steps, args.k)
    first = next(iter(seconds.values()))
    print(describe(host_info()))
    for name, times in seconds.items():
        ratios = [t / f for t, f in zip(times, first)]
        print(f"{name}: {statistics.median(times) * 1e3:.1f} ms a step (median of "
              f"{args.turns} turns of {args.steps}), {statistics.median(ratios):.3f}x the first "
              f"(turns {', '.join(f'{r:.3f}' for r in ratios)})")
    return seconds


if __name__ == "__main__":
    main()
