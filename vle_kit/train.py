"""Training: build the model from a recipe, draw K each step, save, resume, evaluate."""

from __future__ import annotations

import ctypes
import math
import os
import random
import signal
import time
import tomllib
from contextlib import contextmanager

import attrs
import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from vle_kit import checkpoint, distributed
from vle_kit.config import Recipe
from vle_kit.errors import VleKitError
from vle_kit.evaluate import encode_all, to_signed, write_evaluation
from vle_kit.interfaces import ImageSet, ModelSpec
from vle_kit.model import VLE
from vle_kit.plugins import Registry
from vle_kit.recipe import differences, dump_recipe, load_recipe, validate
from vle_kit.runs import MetricsLog, RunDir


class Interrupted(VleKitError):
    """The user asked the run to stop; a checkpoint was saved."""


def keep_freed_memory() -> bool:
    """Have glibc keep freed large blocks for reuse instead of unmapping them: a training step
    frees and re-allocates the same large activations, and mapping them afresh costs page
    faults (2.2x the step time at 128 x 128 images, benchmarks/speed.py). Linux glibc only;
    returns whether it took effect."""
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    trim_threshold, mmap_threshold = -1, -3  # malloc.h's M_TRIM_THRESHOLD, M_MMAP_THRESHOLD
    return bool(mallopt(mmap_threshold, 2**30)) and bool(mallopt(trim_threshold, 2**34))


def select_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise VleKitError("train.device: 'cuda' asked for, but no CUDA device is available")
    return torch.device(name)


def build_model(recipe: Recipe, registry: Registry, image_channels: int = 3) -> VLE:
    m = recipe.model
    spec = ModelSpec(image_channels=image_channels, width=m.width, tokens_max=recipe.tokens.max)

    def part(slot: str, choice):
        return registry.get(slot, choice.use).factory(choice.config, spec)

    return VLE(m, image_channels=image_channels, image_size=recipe.data.config.size,
               tokens_max=recipe.tokens.max, composer=part("composer", m.composer),
               memory=part("memory", m.memory), saliency=part("saliency", m.saliency),
               combiner=part("combiner", m.combiner))


def load_data(recipe: Recipe, registry: Registry) -> tuple[ImageSet, ImageSet]:
    """The train and test splits of the recipe's data set."""
    dataset = registry.get("dataset", recipe.data.use).factory(recipe.data.config)
    return dataset.load("train"), dataset.load("test")


@attrs.frozen
class TrainedRun:
    """A finished (or stopped) run, loaded to evaluate, encode or decode with."""

    run: RunDir
    recipe: Recipe
    registry: Registry
    model: VLE
    device: torch.device


def load_run(path, overrides: list[str] = (), plugins: list[str] = (), data: str | None = None,
             device: str | None = None) -> TrainedRun:
    """The model of a run directory from its last checkpoint, in eval mode; `data` and
    `overrides` change what the recipe says about the data (see `load_recipe`)."""
    run = RunDir.existing(path)
    recipe, registry = load_recipe(run.recipe, overrides, plugins, data)
    state = checkpoint.load(run.checkpoint)
    chosen = select_device(device or recipe.train.device)
    model = build_model(recipe, registry, state.get("image_channels", 3))
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as e:
        lines = str(e).strip().splitlines()
        raise VleKitError(f"{run.checkpoint}: does not fit the model of {run.recipe} "
                          f"({lines[min(1, len(lines) - 1)].strip()})") from None
    return TrainedRun(run, recipe, registry, model.to(chosen).eval(), chosen)


def rng_state() -> dict:
    """Every global random generator, as tensors and plain values (loadable weights-only)."""
    version, mt, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "python": {"version": version, "state": list(mt), "gauss": gauss},
            "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": pos,
                      "has_gauss": has_gauss, "cached": cached}}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["cached"]))


def learning_rate(step: int, cfg) -> float:
    """Linear warm-up, then cosine decay to a tenth: a pure function of the step."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (0.1 + 0.45 * (1 + math.cos(math.pi * progress)))


# Keys a resumed run may change with --allow-changes: none alters what was already trained.
SAFE_TO_CHANGE = frozenset({"train.steps", "train.lr", "train.log_every", "train.checkpoint_every",
                            "train.keep", "train.eval_images", "train.grid_images",
                            "train.on_nan", "eval.tokens", "eval.probe_images"})


class Trainer:
    """Everything a run needs between steps; its `state()` is the whole checkpoint."""

    def __init__(self, recipe: Recipe, registry: Registry, run: RunDir):
        self.recipe, self.registry, self.run = recipe, registry, run
        cfg = recipe.train
        self.device = distributed.start(select_device(cfg.device))
        if cfg.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True)
        torch.manual_seed(cfg.seed)
        self.train_set, self.test_set = load_data(recipe, registry)
        self.model = build_model(recipe, registry, self.train_set.images.shape[1]).to(self.device)
        self.memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        self.model.to(memory_format=self.memory_format)
        if self.device.type == "cpu":
            keep_freed_memory()
        self.mask_losses = [
            (c.use, c.config, registry.get("mask_loss", c.use).factory(c.config))
            for c in recipe.mask_loss]
        # a mask head's logits go unused at the last step (it takes what is left), so at K = 1
        head_has_weights = bool(list(self.model.saliency.parameters()))
        self.net = DistributedDataParallel(self.model, find_unused_parameters=head_has_weights) \
            if distributed.active() else self.model
        if cfg.compile:
            torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit,
                                                        2 * recipe.tokens.max)  # a graph per K
            self.net = torch.compile(self.net)
        self.bf16 = cfg.bf16 and self.device.type == "cuda"
        if cfg.bf16 and not self.bf16 and distributed.is_main():
            print("train.bf16: no GPU, training in float32", flush=True)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=0.0)
        self.sampler = torch.Generator().manual_seed(cfg.seed)  # draws K
        self.batches = distributed.EpochBatches(len(self.train_set), cfg.batch, cfg.seed)
        self.step = 0
        self.best = math.inf  # lowest test MSE seen at a checkpoint

    def state(self) -> dict:
        return {"step": self.step, "best": self.best, "recipe": dump_recipe(self.recipe),
                "image_channels": self.train_set.images.shape[1],
                "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "sampler": self.sampler.get_state(), "rng": rng_state()}

    def restore(self, state: dict, allow_changes: bool = False) -> None:
        where = self.run.checkpoint
        saved = validate(tomllib.loads(state["recipe"]), self.registry, f"{where} (its recipe)")
        changed = differences(saved, self.recipe)
        listing = "; ".join(f"{k}: {a!r} -> {b!r}" for k, a, b in
                            ((k, *v) for k, v in changed.items()))
        if any(k not in SAFE_TO_CHANGE for k in changed):
            raise VleKitError(f"{where}: was written by a different recipe ({listing}); only "
                              f"{', '.join(sorted(SAFE_TO_CHANGE))} may change on resume")
        if changed and not allow_changes:
            raise VleKitError(f"{where}: the recipe changed ({listing}); pass --allow-changes "
                              f"to resume with it")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.sampler.set_state(state["sampler"])
        set_rng_state(state["rng"])
        self.step, self.best = state["step"], state["best"]

    def test_mse(self) -> float:
        """Test MSE after tokens.max tokens on the first train.eval_images test images."""
        images = self.test_set.images[:self.recipe.train.eval_images]
        return encode_all(self.model, images, self.recipe.tokens.max, self.device,
                          score="last").mse[:, -1].mean().item()

    def save(self, score: bool = True) -> dict:
        """Write last.pt; on a scheduled save also a numbered copy (keeping train.keep) and,
        when the test MSE is the lowest so far, best.pt. Returns what it measured."""
        measured = {}
        if score:
            measured["test_mse"] = mse = self.test_mse()
            improved = mse < self.best
            self.best = min(self.best, mse)
        if not distributed.is_main():
            return measured
        state = self.state()
        checkpoint.save(state, self.run.checkpoint)
        if score:
            checkpoint.save(state, self.run.step_checkpoint(self.step))
            for old in sorted(self.run.checkpoints.glob("step_*.pt"))[:-self.recipe.train.keep]:
                old.unlink()
            if improved:
                checkpoint.save(state, self.run.best)
        return measured

    def train_step(self) -> dict[str, float]:
        cfg, tokens = self.recipe.train, self.recipe.tokens
        k = int(torch.randint(tokens.min, tokens.max + 1, (1,), generator=self.sampler))
        x = to_signed(self.train_set.images[self.batches(self.step)]).to(
            self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
        self.net.train()
        with torch.autocast(self.device.type, torch.bfloat16, enabled=self.bf16):
            out = self.net(x, k, progress=self.step / cfg.steps)
        per_step = (out.recons.float() - x[:, None]).pow(2).mean(dim=(0, 2, 3, 4))  # (k,)
        terms = {"final": per_step[-1], "steps": per_step.mean()}
        loss = terms["final"] + cfg.step_loss * terms["steps"]
        if out.kl is not None:  # per image value, the scale of the MSE
            terms["kl"] = out.kl.float().mean() / x[0].numel()
            loss = loss + self.recipe.model.token.kl_weight * terms["kl"]
        for name, mcfg, mask_loss in self.mask_losses if out.masks is not None else ():
            ramp = min(1.0, (self.step + 1) / mcfg.warmup) if mcfg.warmup else 1.0
            terms[name] = value = mask_loss(out.masks.float(), x)
            loss = loss + mcfg.weight * ramp * value
        # one host sync a step; under torchrun the means over ranks, so all ranks agree
        total, *values = distributed.mean(torch.stack([loss, *terms.values()]).detach()).tolist()
        logged = dict(zip(terms, values))
        if not math.isfinite(total):
            bad = ", ".join(f"{n}={v:.4g}" for n, v in logged.items())
            if cfg.on_nan == "skip":
                self.step += 1
                return {"k": k, "skipped": f"loss {total} ({bad})"}
            raise VleKitError(f"step {self.step + 1}: the loss is {total} ({bad}); the last "
                              f"good checkpoint is {self.run.checkpoint} (train.on_nan = "
                              f"'skip' would skip such batches)")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(self.step, cfg)
        self.optimizer.step()
        self.step += 1
        return {"loss": total, "k": k, **logged}

    def evaluate(self) -> dict:
        return write_evaluation(self.model, self.recipe, self.train_set, self.test_set,
                                self.device, self.run, self.recipe.recipe.name)


@contextmanager
def stop_requests():
    """SIGINT/SIGTERM only raise a flag, read between steps, so a save is never cut short."""
    flag = {"signal": None}

    def handler(signum, frame):
        if flag["signal"] is not None:
            print("\nstopping after this step and saving; please wait", flush=True)
        flag["signal"] = signal.Signals(signum).name

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def train(recipe: Recipe, registry: Registry, run: RunDir, resume: bool = False,
          allow_changes: bool = False) -> dict:
    """Train (or continue) a run to recipe.train.steps, then evaluate it. Returns eval.json
    (under torchrun: on rank 0; the other ranks return {})."""
    trainer = Trainer(recipe, registry, run)  # joins the torchrun job, if any
    main = distributed.is_main()
    if main:
        checkpoint.clean_temporary(run.checkpoints)
    if resume:
        trainer.restore(checkpoint.load(run.checkpoint), allow_changes)
    if main:
        with checkpoint.atomic(run.recipe) as f:  # a kill must not leave half a recipe
            f.write(dump_recipe(recipe).encode())
    cfg = recipe.train
    log = MetricsLog(run.metrics, run.tensorboard, resume_step=trainer.step if resume else None,
                     enabled=main)
    bar = tqdm(total=cfg.steps, initial=trainer.step, desc=recipe.recipe.name,
               disable=None if main else True, mininterval=1.0)
    started = time.perf_counter()
    try:
        with stop_requests() as stop:
            while trainer.step < cfg.steps:
                row = trainer.train_step()
                bar.update(1)
                step = trainer.step
                if step % cfg.log_every == 0 or step == cfg.steps or "skipped" in row:
                    log.write({"step": step, **row, "lr": learning_rate(step - 1, cfg),
                               "seconds": round(time.perf_counter() - started, 3)})
                    bar.set_postfix(loss=f"{row.get('loss', math.nan):.4f}")
                if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                    log.write({"step": step, **trainer.save()})
                if distributed.any_rank(stop["signal"] is not None):
                    trainer.save(score=False)
                    raise Interrupted(f"{stop['signal'] or 'a stop on another rank'} at step "
                                      f"{step}: checkpoint saved to {run.checkpoint}; continue "
                                      f"with `vle-kit run --resume {run.path}`")
    finally:
        bar.close()
        log.close()
    return trainer.evaluate()
