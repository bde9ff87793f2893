"""How fast vle_kit trains and encodes on this machine, and how close to its matmul rate.

    python -m benchmarks [--isa native avx2] [--recipes recipes/vanilla.toml ...] [--quick]
                         [--set KEY=VALUE ...] [--out DIR]

For each recipe: training images per second at K = tokens.max, and that rate per GFLOP/s of
this machine's float32 matmul rate measured in the same run (the figure that compares hosts);
encoding images per second per token, peak memory, floating-point operations per training
step (counted with torch.utils.flop_counter) and the rate they run at. Then where the time of
a training step of the first recipe goes (benchmarks/profile.py), time per training step as K
goes 1..16 and as the image size goes 32, 64, 128, and the framework's overhead against a
hand-written one-shot loop of the same network.

`--isa avx2` runs everything under the AVX2 kernels (ATen, oneDNN and MKL told to use nothing
newer), whatever this CPU has; `--isa native avx2` measures both ways in one command. Each ISA
is measured in a process of its own started with those variables. Prints tables; writes
benchmarks/results/speed.json with the host of every measurement.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.profile import profile_step, trainer_for
from benchmarks.profile import table as profile_table
from vle_kit.build import select_device
from vle_kit.data import to_signed
from vle_kit.host import AVX2_KERNELS, describe, host_info
from vle_kit.interfaces import State
from vle_kit.layers import film
from vle_kit.train import Trainer

RESULTS = Path(__file__).parent / "results"
ROOT = Path(__file__).resolve().parent.parent


def up_to_k(k: int) -> list[str]:
    """Overrides for K from 1 up to `k`: a recipe's tokens.min (8 in `inherent`) may exceed k,
    and its per-K and per-step weights are sized to its own tokens.max, so they go too (K is
    then drawn uniformly, every step weighted 1)."""
    return ["tokens.min=1", f"tokens.max={k}", "tokens.weights=[]", "train.step_weights=[]"]


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def matmul_rate(device: torch.device, n: int = 1024, seconds: float = 2.0) -> float:
    """float32 FLOP/s of a square matmul on `device`, the best of repeated timings."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    a @ b
    best, end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        sync()
        start = time.perf_counter()
        a @ b
        sync()
        best = max(best, 2 * n**3 / (time.perf_counter() - start))
    return best


def timed(fn, repeats: int, warmup: int = 2) -> float:
    """Median seconds of fn() over `repeats` calls, after `warmup` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def train_step_flops(trainer: Trainer, k: int) -> int:
    with FlopCounterMode(display=False) as counter:
        trainer.train_step(k)
    return counter.get_total_flops()


def measure_recipe(path: Path, overrides: list[str], repeats: int, peak: float) -> dict:
    """One recipe's rates; run in a process of its own so its peak memory is its own."""
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    trainer = trainer_for(path, overrides)
    k, batch = trainer.recipe.tokens.max, trainer.recipe.train.batch
    step = timed(lambda: trainer.train_step(k), repeats)
    flops = train_step_flops(trainer, k)
    x = to_signed(trainer.test_set.images[:16].repeat(8, 1, 1, 1)).to(trainer.device)
    model = trainer.model.eval()

    def encode():
        with torch.no_grad():
            model(x, k)

    encode_s = timed(encode, repeats)
    return {"recipe": path.stem, "tokens": k, "batch": batch,
            "train_images_per_s": batch / step, "train_step_s": step,
            "images_per_s_per_matmul_gflops": batch / step / (peak / 1e9),
            "encode_images_per_s_per_token": len(x) * k / encode_s,
            "flops_per_step": flops, "flop_rate": flops / step, "share_of_matmul": flops / step
            / peak, "rss_before_mb": baseline,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20
            if trainer.device.type == "cuda" else None}


def apart(fn, *args):
    """fn(*args) in a fresh process (spawned: it imports torch anew, so it sees the kernel
    variables of the environment it starts with, and its peak memory is its own)."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


@contextmanager
def environment(variables: dict[str, str]):
    """os.environ with `variables` set, for the processes started meanwhile."""
    saved = {k: os.environ.get(k) for k in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def scaling(path: Path, overrides: list[str], repeats: int) -> dict:
    """Seconds per training step as K and as the image size grow."""
    per_k = {}
    for k in (1, 2, 4, 8, 16):
        trainer = trainer_for(path, overrides + up_to_k(k))
        per_k[k] = timed(lambda: trainer.train_step(k), repeats)
    per_size = {}
    for size in (32, 64, 128):
        trainer = trainer_for(path, overrides + [f"data.size={size}"])
        per_size[size] = timed(lambda: trainer.train_step(8), max(2, repeats // 2))
    return {"seconds_per_step_by_k": per_k, "seconds_per_step_by_size": per_size}


def hand_written_step(trainer: Trainer):
    """The same network as a plain one-shot autoencoder (its FiLM at K = 1 included): no
    composer, memory, saliency, combiner or plug-in in the way; the same data, loss, clipping
    and optimiser."""
    m, cfg, optimizer = trainer.model, trainer.recipe.train, trainer.optimizer
    generator = torch.Generator().manual_seed(0)

    def step():
        idx = torch.randint(len(trainer.train_set), (cfg.batch,), generator=generator)
        x = to_signed(trainer.train_set.images[idx]).to(trainer.device).contiguous(
            memory_format=trainer.memory_format)
        m.train()
        token = m.token_layer(x, m.body(film(m.stem(x), m.conditioning(1, 0))), 0)
        recon, _ = m.decoder(token, State.start(x, 1), None)
        loss = (recon - x).pow(2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), cfg.grad_clip)
        optimizer.step()
        loss.item()

    return step


def overhead(path: Path, overrides: list[str], repeats: int) -> dict:
    """vle_kit with K = 1 against hand_written_step (gain, log-MSE, the weights' average and
    augmentation off, so that both train the same network on the same loss and do the same
    work), a step of each in turn, the first of a pair alternating: the median of the pairs'
    time ratios, so that noise lasting longer than a step (other tenants) cancels out."""
    trainer = trainer_for(path, overrides + up_to_k(1) + [
        "model.memory={use='none'}", "model.token.gain=false", "train.loss='mse'", "train.ema=0",
        "train.augment=[]"])
    steps = {"framework": lambda: trainer.train_step(1), "hand": hand_written_step(trainer)}
    times = {name: [] for name in steps}
    for i in range(2 + 6 * repeats):
        for name in sorted(steps, reverse=i % 2 == 1):
            times[name].append(timed(steps[name], repeats=1, warmup=0))
    framework, hand = times["framework"][2:], times["hand"][2:]  # the first two pairs warm up
    ratio = statistics.median(f / h for f, h in zip(framework, hand))
    return {"vle_kit_s": statistics.median(framework), "hand_written_s": statistics.median(hand),
            "overhead": ratio - 1, "pairs": len(framework)}


def growth(per: dict, exponent: int) -> str:
    """Time ratio between consecutive entries beside the ratio of work, (b / a) ** exponent:
    K for exponent 1, pixels (size squared) for exponent 2."""
    keys = sorted(per)
    return ", ".join(f"{a}->{b}: {per[b] / per[a]:.2f}x time for {(b / a) ** exponent:.0f}x work"
                     for a, b in zip(keys[:-1], keys[1:]))


def measure_host(recipes: list[Path], overrides: list[str], quick: bool) -> dict:
    """Everything this benchmark measures, on the kernels this process was started with."""
    repeats = 3 if quick else 10
    torch.manual_seed(0)
    device = select_device("auto")
    peak = matmul_rate(device, seconds=0.5 if quick else 2.0)
    rows = [apart(measure_recipe, r, overrides, repeats, peak) for r in recipes]
    profiled = profile_step(recipes[0], overrides, steps=2 if quick else 5)
    scale = scaling(recipes[0], overrides, max(2, repeats // 2))
    return {"host": host_info(), "device": str(device), "matmul_flop_rate": peak,
            "recipes": rows, "profile": profiled, **scale,
            "overhead": overhead(recipes[0], overrides, repeats)}


def report(result: dict) -> None:
    print(f"\n## {describe(result['host'])}\n\nfloat32 matmul rate: "
          f"{result['matmul_flop_rate'] / 1e9:.1f} GFLOP/s on {result['device']}")
    print("\n| recipe | K | train img/s | img/s per matmul GFLOP/s | encode img/s per token "
          "| GFLOP/step | GFLOP/s | peak RSS MB (at start) | peak GPU MB |\n"
          "|---|---|---|---|---|---|---|---|---|")
    for r in result["recipes"]:
        gpu = "" if r["peak_gpu_mb"] is None else f"{r['peak_gpu_mb']:.0f}"
        print(f"| {r['recipe']} | {r['tokens']} | {r['train_images_per_s']:.1f} "
              f"| {r['images_per_s_per_matmul_gflops']:.3f} "
              f"| {r['encode_images_per_s_per_token']:.0f} | {r['flops_per_step'] / 1e9:.2f} "
              f"| {r['flop_rate'] / 1e9:.1f} "
              f"| {r['peak_rss_mb']:.0f} ({r['rss_before_mb']:.0f}) | {gpu} |")
    print("\n" + profile_table(result["profile"]))
    recipe = result["recipes"][0]["recipe"]
    print(f"\nseconds per training step ({recipe}):")
    for name, exponent in (("seconds_per_step_by_k", 1), ("seconds_per_step_by_size", 2)):
        per = result[name]
        print(f"  {name}: " + ", ".join(f"{k}: {v:.3f}" for k, v in per.items())
              + f"\n    {growth(per, exponent)}")
    over = result["overhead"]
    print(f"\nframework overhead, K = 1, no memory: vle_kit {over['vle_kit_s'] * 1e3:.1f} ms, "
          f"hand-written {over['hand_written_s'] * 1e3:.1f} ms (medians); median of "
          f"{over['pairs']} paired ratios: {over['overhead']:+.1%}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--isa", nargs="+", choices=("native", "avx2"), default=["native"],
                   help="measure with this CPU's best kernels, the AVX2 ones, or both")
    p.add_argument("--recipes", nargs="+", type=Path,
                   default=[ROOT / "recipes" / f"{r}.toml" for r in
                            ("vanilla", "inherent", "saliency", "constructor")])
    p.add_argument("--quick", action="store_true", help="fewer repeats (a smoke test)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--out", type=Path, default=RESULTS, help="where speed.json goes")
    args = p.parse_args(argv)
    results = {}
    for isa in args.isa:
        with environment(AVX2_KERNELS if isa == "avx2" else {}):
            results[isa] = apart(measure_host, args.recipes, args.overrides, args.quick)
        report(results[isa])
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / "speed.json"
    out.write_text(json.dumps({"overrides": args.overrides, "by_isa": results}, indent=2))
    print(f"wrote {out}")
