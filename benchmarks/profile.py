"""Where the time of one training step goes: by module (forward and backward of the stem,
memory, body, token layer, decoder and the other slots; the loss; the optimiser) and by
operator (torch.profiler).

    python -m benchmarks.profile [--recipe recipes/vanilla.toml] [--k 8] [--steps 5]

Module times come from hooks around each module's forward and backward passes, summed over
the K calls of a step; what no hook covers (the loss, FiLM, copies, bookkeeping) is "rest".
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from collections import defaultdict
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from vle_kit.host import describe, host_info
from vle_kit.recipe import load_recipe
from vle_kit.runs import RunDir
from vle_kit.train import Trainer

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).parent / "results"
MODULES = ("composer", "stem", "memory", "body", "to_token", "linear", "decoder", "saliency",
           "combiner")  # "linear": the token layer's linear maps, where the recipe has them


class ModuleClock:
    """Seconds spent in each listed module's forward and backward passes, and in the
    optimiser's step (with gradient clipping and zeroing outside it, those go to "rest")."""

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer):
        self.seconds: dict[str, float] = defaultdict(float)
        self.started: dict[str, float] = {}
        self.handles = []
        for name in MODULES:
            module = getattr(model, name)
            if module is None:
                continue
            self.handles += [
                module.register_forward_pre_hook(self.start(f"{name} forward")),
                module.register_forward_hook(self.stop(f"{name} forward")),
                module.register_full_backward_pre_hook(self.start(f"{name} backward")),
                module.register_full_backward_hook(self.stop(f"{name} backward"))]
        self.handles += [optimizer.register_step_pre_hook(self.start("optimiser")),
                         optimizer.register_step_post_hook(self.stop("optimiser"))]

    def start(self, key: str):
        def hook(*args):
            self.started[key] = time.perf_counter()
        return hook

    def stop(self, key: str):
        def hook(*args):
            if key in self.started:
                self.seconds[key] += time.perf_counter() - self.started.pop(key)
        return hook

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def trainer_for(recipe: Path, overrides: list[str]) -> Trainer:
    """A trainer of `recipe` on little data: the data are generated, not what is timed."""
    recipe_, registry = load_recipe(recipe, ["data.train=512", "data.test=16", *overrides])
    return Trainer(recipe_, registry, RunDir(Path(tempfile.mkdtemp())))


def profile_step(recipe: Path, overrides: list[str] = (), k: int | None = None,
                 steps: int = 5) -> dict:
    """Milliseconds per training step by module and by operator, means over `steps` steps."""
    trainer = trainer_for(recipe, list(overrides))
    k = k or trainer.recipe.tokens.max
    for _ in range(2):
        trainer.train_step(k)  # warm-up: first calls allocate and pick kernels
    clock = ModuleClock(trainer.model, trainer.optimizer)
    started = time.perf_counter()
    with warnings.catch_warnings():  # hooks on parts that return None or take no gradient
        warnings.filterwarnings("ignore", message=".*(backward hook|module output)")
        for _ in range(steps):
            trainer.train_step(k)
    total = (time.perf_counter() - started) / steps
    clock.remove()
    modules = {key: s / steps for key, s in sorted(clock.seconds.items(), key=lambda i: -i[1])}
    modules["rest (loss, FiLM, copies, clipping, bookkeeping)"] = total - sum(modules.values())
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            trainer.train_step(k)
    events = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    operators = {e.key: e.self_cpu_time_total / 1e6 / steps for e in events[:15]}
    return {"recipe": recipe.stem, "k": k, "batch": trainer.recipe.train.batch,
            "step_s": total, "modules_s": modules, "operators_s": operators}


def table(result: dict) -> str:
    total = result["step_s"]
    lines = [f"one {result['recipe']} training step, K = {result['k']}, batch "
             f"{result['batch']}: {total * 1e3:.0f} ms",
             "| module | ms | share |", "|---|---|---|"]
    lines += [f"| {name} | {s * 1e3:.1f} | {s / total:.0%} |"
              for name, s in result["modules_s"].items()]
    lines += ["", "| operator (self time) | ms | share |", "|---|---|---|"]
    lines += [f"| {name} | {s * 1e3:.1f} | {s / total:.0%} |"
              for name, s in result["operators_s"].items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipe", type=Path, default=ROOT / "recipes" / "vanilla.toml")
    p.add_argument("--k", type=int, help="tokens per step (tokens.max)")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = p.parse_args(argv)
    result = profile_step(args.recipe, args.overrides, args.k, args.steps)
    print(describe(host_info()))
    print(table(result))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "profile.json").write_text(json.dumps({"host": host_info(), **result}, indent=2))
    print(f"wrote {RESULTS / 'profile.json'}")


if __name__ == "__main__":
    main()
