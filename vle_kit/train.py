"""Training: the loop that draws K, steps the optimiser, saves, resumes and stops on request.

What a step minimises is `vle_kit.objective`; how the model and data are built from the recipe
is `vle_kit.build`.
"""

from __future__ import annotations

import math
import os
import signal
import time
import tomllib
from contextlib import contextmanager

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from vle_kit import checkpoint, distributed
from vle_kit.build import build_mask_losses, build_model, load_data, select_device
from vle_kit.config import Recipe
from vle_kit.data import augment, to_signed
from vle_kit.errors import Interrupted, VleKitError
from vle_kit.evaluate import encode_all, write_evaluation
from vle_kit.host import cpp_compiler, host_info, keep_freed_memory
from vle_kit.objective import objective
from vle_kit.plugins import Registry
from vle_kit.recipe import differences, dump_recipe, validate
from vle_kit.results import Evaluation
from vle_kit.runs import MetricsLog, RunDir, RunInfo, command_line


def learning_rate(step: int, cfg) -> float:
    """Linear warm-up, then cosine decay to `lr_end` of the peak: a pure function of the step."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (cfg.lr_end + (1 - cfg.lr_end) * 0.5 * (1 + math.cos(math.pi * progress)))


# Keys a resumed run may change with --allow-changes: none alters what was already trained.
SAFE_TO_CHANGE = frozenset({"train.steps", "train.lr", "train.lr_end", "train.log_every",
                            "train.checkpoint_every", "train.keep", "train.eval_images",
                            "train.grid_images", "train.on_nan", "eval.tokens",
                            "eval.probe_images", "eval.max_error", "eval.min_mask"})


def compiled(net: torch.nn.Module, tokens_max: int, device: torch.device) -> torch.nn.Module:
    """`net` under torch.compile, a graph per K; `net` itself where the CPU kernels could not be
    built, for want of a C++ compiler. Says which."""
    buildable = device.type != "cpu" or cpp_compiler() is not None
    says = ("the first step compiles the model (minutes on a CPU; kept in torch's cache for "
            "later runs of the same model)" if buildable else
            "no C++ compiler (g++, or $CXX), which torch.compile needs on the CPU: training "
            "uncompiled")
    if distributed.is_main():
        print(f"train.compile: {says}", flush=True)
    if not buildable:
        return net
    dynamo = torch._dynamo.config
    dynamo.cache_size_limit = max(dynamo.cache_size_limit, 2 * tokens_max)
    return torch.compile(net)


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
        self.mask_losses = build_mask_losses(recipe, registry)
        self.net = self.wrapped()
        self.bf16 = cfg.bf16 and self.device.type == "cuda"
        if cfg.bf16 and not self.bf16 and distributed.is_main():
            print("train.bf16: no GPU, training in float32", flush=True)
        # fused: one pass over the weights, not one per operation (3.6x faster a step on CPU)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=0.0,
                                           fused=self.device.type in ("cpu", "cuda"))
        # Polyak averaging: training never sees the average, the evaluation sees only it
        self.averaged = AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema),
                                      use_buffers=True) if cfg.ema else None
        self.sampler = torch.Generator().manual_seed(cfg.seed)  # draws K
        self.batches = distributed.EpochBatches(len(self.train_set), cfg.batch, cfg.seed)
        self.step = 0
        self.best = math.inf  # lowest test MSE seen at a checkpoint

    def wrapped(self) -> torch.nn.Module:
        """The model as the steps call it: under DistributedDataParallel in a torchrun job,
        compiled if the recipe asks."""
        net = self.model
        if distributed.active():
            # a module whose weights some steps leave without a gradient says so with
            # `idle_some_steps` (a mask head, the linear maps; a plug-in's own modules may too)
            idle = any(getattr(m, "idle_some_steps", False) and any(True for _ in m.parameters())
                       for m in self.model.modules())
            net = DistributedDataParallel(net, find_unused_parameters=idle)
        if self.recipe.train.compile:
            net = compiled(net, self.recipe.tokens.max, self.device)
        return net

    @property
    def evaluated(self) -> torch.nn.Module:
        """The weights a run is scored and used with: their average with `train.ema`."""
        return self.model if self.averaged is None else self.averaged.module

    def state(self) -> dict:
        state = {"step": self.step, "best": self.best, "recipe": dump_recipe(self.recipe),
                 "image_channels": self.train_set.images.shape[1],
                 "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "sampler": self.sampler.get_state(), "rng": checkpoint.rng_state()}
        if self.averaged is not None:  # `averaged` is what load_run gives `vle-kit eval`
            state["averaged"] = self.averaged.module.state_dict()
            state["averaged_count"] = self.averaged.n_averaged.item()
        return state

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
        if self.averaged is not None:
            self.averaged.module.load_state_dict(state["averaged"])
            self.averaged.n_averaged.fill_(state["averaged_count"])
        self.optimizer.load_state_dict(state["optimizer"])
        for group in self.optimizer.param_groups:  # the kernel is this machine's, not the saver's
            group["fused"] = self.optimizer.defaults["fused"]
        self.sampler.set_state(state["sampler"])
        checkpoint.set_rng_state(state["rng"])
        self.step, self.best = state["step"], state["best"]

    def test_mse(self) -> float:
        """Test MSE after tokens.max tokens on the first train.eval_images test images."""
        images = self.test_set.images[:self.recipe.train.eval_images]
        return encode_all(self.evaluated, images, self.recipe.tokens.max, self.device,
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

    def train_step(self, k: int | None = None) -> dict[str, float]:
        """One optimiser step with K = k tokens (drawn as [tokens] says if None).
        Returns what it logs: the loss, K and the loss terms."""
        cfg = self.recipe.train
        draw = self.recipe.tokens.draw(self.sampler)
        k = draw if k is None else k  # drawn either way: a fixed-K step keeps the sequence
        images = self.train_set.images[self.batches(self.step)]
        if cfg.augment:  # drawn from seed and step, so a resumed run draws the same
            images = augment(images, cfg.augment, cfg.seed << 32 | self.step,
                             self.batches.places(), cfg.batch)
        x = to_signed(images).to(self.device, non_blocking=True).contiguous(
            memory_format=self.memory_format)
        self.net.train()
        with torch.autocast(self.device.type, torch.bfloat16, enabled=self.bf16):
            progress = self.step / cfg.steps
            if cfg.compile:  # a tensor, not a float: the graph of step 0 serves every step
                progress = torch.tensor(progress, dtype=torch.float64, device=self.device)
            out = self.net(x, k, progress=progress)
        terms = objective(out, x, self.recipe, self.step, self.mask_losses)
        loss = terms.pop("loss")
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
        if self.averaged is not None:
            self.averaged.update_parameters(self.model)
        self.step += 1
        return {"loss": total, "k": k, **logged}

    def evaluate(self) -> Evaluation | None:
        return write_evaluation(self.evaluated, self.recipe, self.train_set, self.test_set,
                                self.device, self.run, self.recipe.recipe.name, trained=self.run)


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
          allow_changes: bool = False) -> Evaluation | None:
    """Train (or continue) a run to recipe.train.steps, then evaluate it. Returns what
    eval.json holds (under torchrun: on rank 0; the other ranks return None)."""
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
    earlier = RunInfo.read(run) if resume else None
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
        if main:
            RunInfo(command=command_line(), host=host_info(), steps=trainer.step,
                    train_seconds=time.perf_counter() - started
                    + (earlier.train_seconds if earlier else 0.0),
                    sessions=earlier.sessions + 1 if earlier else 1).write(run)
    return trainer.evaluate()
