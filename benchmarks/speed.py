"""How fast vle_kit trains and encodes on this machine, and how close to its matmul rate.

    python -m benchmarks [--recipes recipes/vanilla.toml ...] [--quick] [--set KEY=VALUE ...]
                         [--out DIR]

For each recipe: training images per second at K = tokens.max, encoding images per second per
token, peak memory, floating-point operations per training step (counted with
torch.utils.flop_counter) and the rate they run at as a share of this machine's float32 matmul
rate, measured in the same run. Then time per training step as K goes 1..16 and as the image
size goes 32, 64, 128, and the framework's overhead against a hand-written one-shot loop of the
same network. Prints tables; writes benchmarks/results/speed.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import platform
import resource
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from vle_kit.build import select_device
from vle_kit.data import to_signed
from vle_kit.recipe import load_recipe
from vle_kit.runs import RunDir
from vle_kit.train import Trainer

RESULTS = Path(__file__).parent / "results"
ROOT = Path(__file__).resolve().parent.parent
SMALL_DATA = ["data.train=512", "data.test=16"]  # the data are generated, not what is timed


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


def trainer_for(recipe_path: Path, overrides: list[str]) -> Trainer:
    recipe, registry = load_recipe(recipe_path, SMALL_DATA + overrides)
    return Trainer(recipe, registry, RunDir(Path(tempfile.mkdtemp())))


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
            "encode_images_per_s_per_token": len(x) * k / encode_s,
            "flops_per_step": flops, "flop_rate": flops / step, "share_of_matmul": flops / step
            / peak, "rss_before_mb": baseline,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20
            if trainer.device.type == "cuda" else None}


def measure_apart(path: Path, overrides: list[str], repeats: int, peak: float) -> dict:
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(measure_recipe, path, overrides, repeats, peak).result()


def scaling(path: Path, overrides: list[str], repeats: int) -> dict:
    """Seconds per training step as K and as the image size grow."""
    per_k = {}
    for k in (1, 2, 4, 8, 16):
        trainer = trainer_for(path, overrides + [f"tokens.max={k}"])
        per_k[k] = timed(lambda: trainer.train_step(k), repeats)
    per_size = {}
    for size in (32, 64, 128):
        trainer = trainer_for(path, overrides + [f"data.size={size}"])
        per_size[size] = timed(lambda: trainer.train_step(8), max(2, repeats // 2))
    return {"seconds_per_step_by_k": per_k, "seconds_per_step_by_size": per_size}


def hand_written_step(trainer: Trainer):
    """The same network as a plain one-shot autoencoder: no composer, memory, FiLM, saliency,
    combiner or plug-in in the way; the same data, loss, clipping and optimiser."""
    m, cfg, optimizer = trainer.model, trainer.recipe.train, trainer.optimizer
    generator = torch.Generator().manual_seed(0)

    def step():
        idx = torch.randint(len(trainer.train_set), (cfg.batch,), generator=generator)
        x = to_signed(trainer.train_set.images[idx]).to(trainer.device).contiguous(
            memory_format=trainer.memory_format)
        m.train()
        recon, _ = m.decoder(m.to_token(m.body(m.stem(x))), None, None)
        loss = (recon - x).pow(2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), cfg.grad_clip)
        optimizer.step()
        loss.item()

    return step


def overhead(path: Path, overrides: list[str], repeats: int) -> dict:
    """vle_kit with K = 1 against hand_written_step, alternating to share machine noise."""
    trainer = trainer_for(path, overrides + ["model.memory={use='none'}", "tokens.max=1"])
    plain = hand_written_step(trainer)
    framework, hand = [], []
    for _ in range(3):
        framework.append(timed(lambda: trainer.train_step(1), repeats))
        hand.append(timed(plain, repeats))
    f, h = min(framework), min(hand)
    return {"vle_kit_s": f, "hand_written_s": h, "overhead": f / h - 1}


def growth(per: dict, exponent: int) -> str:
    """Time ratio between consecutive entries beside the ratio of work, (b / a) ** exponent:
    K for exponent 1, pixels (size squared) for exponent 2."""
    keys = sorted(per)
    return ", ".join(f"{a}->{b}: {per[b] / per[a]:.2f}x time for {(b / a) ** exponent:.0f}x work"
                     for a, b in zip(keys[:-1], keys[1:]))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipes", nargs="+", type=Path,
                   default=[ROOT / "recipes" / f"{r}.toml" for r in
                            ("vanilla", "inherent", "saliency", "constructor")])
    p.add_argument("--quick", action="store_true", help="fewer repeats (a smoke test)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--out", type=Path, default=RESULTS, help="where speed.json goes")
    args = p.parse_args(argv)
    repeats = 3 if args.quick else 10
    torch.manual_seed(0)
    device = select_device("auto")
    peak = matmul_rate(device, seconds=0.5 if args.quick else 2.0)
    print(f"float32 matmul rate: {peak / 1e9:.1f} GFLOP/s on {device}"
          + ("" if device.type == "cuda" else f", {torch.get_num_threads()} threads"))
    rows = [measure_apart(r, args.overrides, repeats, peak) for r in args.recipes]
    print("\n| recipe | K | train img/s | encode img/s per token | GFLOP/step | GFLOP/s "
          "| share of matmul | peak RSS MB (at start) | peak GPU MB |\n"
          "|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        gpu = "" if r["peak_gpu_mb"] is None else f"{r['peak_gpu_mb']:.0f}"
        print(f"| {r['recipe']} | {r['tokens']} | {r['train_images_per_s']:.1f} "
              f"| {r['encode_images_per_s_per_token']:.0f} | {r['flops_per_step'] / 1e9:.2f} "
              f"| {r['flop_rate'] / 1e9:.1f} | {r['share_of_matmul']:.1%} "
              f"| {r['peak_rss_mb']:.0f} ({r['rss_before_mb']:.0f}) | {gpu} |")
    scale = scaling(args.recipes[0], args.overrides, max(2, repeats // 2))
    print(f"\nseconds per training step ({args.recipes[0].stem}):")
    for (name, per), exponent in zip(scale.items(), (1, 2)):
        print(f"  {name}: " + ", ".join(f"{k}: {v:.3f}" for k, v in per.items())
              + f"\n    {growth(per, exponent)}")
    over = overhead(args.recipes[0], args.overrides, repeats)
    print(f"\nframework overhead, K = 1, no memory: vle_kit {over['vle_kit_s'] * 1e3:.1f} ms, "
          f"hand-written {over['hand_written_s'] * 1e3:.1f} ms: {over['overhead']:+.1%}")
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / "speed.json"
    out.write_text(json.dumps({"machine": platform.processor() or platform.machine(),
                               "threads": torch.get_num_threads(), "torch": torch.__version__,
                               "matmul_flop_rate": peak, "recipes": rows, **scale,
                               "overhead": over, "overrides": args.overrides}, indent=2))
    print(f"wrote {out}")
