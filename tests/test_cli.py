"""End to end through the command line: a tiny run, Ctrl+C, and an exact resume."""

import json
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import TINY

from vle_kit import checkpoint
from vle_kit.build import load_run
from vle_kit.recipe import dump_recipe, load_recipe
from vle_kit.runs import RunDir
from vle_kit.train import Trainer

pytestmark = pytest.mark.slow


def vle_kit(*args, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "vle_kit", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def sets(*items):
    return [arg for item in items for arg in ("--set", item)]


def only_run(root):
    (run,) = [p for p in root.iterdir()]
    return run


def test_tiny_run_writes_everything(vanilla, tmp_path):
    proc = vle_kit("run", str(vanilla), "--runs", str(tmp_path), *sets(*TINY))
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    run = only_run(tmp_path)
    assert run.name.endswith("_vanilla")
    for name in ("recipe.toml", "metrics.jsonl", "checkpoints/last.pt", "eval.json", "curve.png",
                 "grid.png"):
        assert (run / name).is_file(), name
    result = json.loads((run / "eval.json").read_text())
    assert result["tokens"] == [1, 2, 3]
    for curve in ("vle", "vle_asked_k", "pca"):
        assert len(result[curve]["mse"]) == len(result[curve]["psnr"]) == 3
    assert result["floats"] == [64, 128, 192]
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [1, 2, 3, 4]
    assert [r["step"] for r in rows if "test_mse" in r] == [2, 4]
    assert "| k | floats | MSE | PSNR dB |" in out, "the table vle-kit eval prints too"


def test_a_reader_that_leaves_early_gets_no_traceback(vanilla):
    """`vle-kit check recipe | head -1`: writing to a pipe nobody reads ends quietly."""
    proc = vle_kit("check", str(vanilla))
    proc.stdout.close()  # no reader left: the first line written meets a broken pipe
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 1
    assert err == "", err


def test_interrupt_then_resume_equals_an_uninterrupted_run(vanilla, tmp_path):
    args = sets(*TINY, "train.steps=400", "train.checkpoint_every=1000")
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    proc = vle_kit("run", str(vanilla), "--runs", str(straight), *args)
    assert proc.wait(timeout=300) == 0, proc.stderr.read()

    proc = vle_kit("run", str(vanilla), "--runs", str(stopped), *args)
    deadline = time.time() + 120
    while time.time() < deadline:
        runs = list(stopped.glob("*/metrics.jsonl"))
        if runs and len(runs[0].read_text().splitlines()) >= 20:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "SIGINT at step" in err and "--resume" in err and "Traceback" not in err
    run = only_run(stopped)
    stopped_at = checkpoint.load(run / "checkpoints" / "last.pt")["step"]
    assert 20 <= stopped_at < 400

    proc = vle_kit("run", "--resume", str(run))
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err

    a = checkpoint.load(only_run(straight) / "checkpoints" / "last.pt")
    b = checkpoint.load(run / "checkpoints" / "last.pt")
    assert a["step"] == b["step"] == 400
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name

    def rows(r):
        return [{k: v for k, v in json.loads(line).items() if k != "seconds"}
                for line in (r / "metrics.jsonl").read_text().splitlines()]

    assert rows(only_run(straight)) == rows(run)


def stopped_and_resumed(recipe, registry, root, before: int, after: int) -> Trainer:
    """A run trained `before` steps, saved, then resumed into a new Trainer for `after` more."""
    stopped = Trainer(recipe, registry, RunDir.create(root, "stopped"))
    for _ in range(before):
        stopped.train_step()
    stopped.save(score=False)
    resumed = Trainer(recipe, registry, stopped.run)
    resumed.restore(checkpoint.load(stopped.run.checkpoint))
    for _ in range(after):
        resumed.train_step()
    return resumed


def test_averaged_weights_follow_the_decay_survive_a_resume_and_are_what_a_run_is_used_with(
        vanilla, tmp_path):
    """train.ema: the average starts at the first step's weights, then moves by 1 - decay
    towards each step's; a run stopped and resumed averages exactly as a straight one; the
    checkpoint scored and load_run give the average, training goes on from the raw weights."""
    recipe, registry = load_recipe(vanilla, TINY + ["train.ema=0.75"])
    straight = Trainer(recipe, registry, RunDir.create(tmp_path, "straight"))
    expected = None
    for _ in range(4):
        straight.train_step()
        weights = [p.detach().clone() for p in straight.model.parameters()]
        expected = weights if expected is None else [
            0.75 * e + 0.25 * w for e, w in zip(expected, weights)]
    for e, a in zip(expected, straight.averaged.module.parameters()):
        assert torch.allclose(e, a, atol=1e-6)
    assert not all(torch.equal(w, a) for w, a in zip(weights, expected))
    plain, _ = load_recipe(vanilla, TINY)  # the average never feeds back into training
    unaveraged = Trainer(plain, registry, RunDir.create(tmp_path, "unaveraged"))
    for _ in range(4):
        unaveraged.train_step()
    for w, u in zip(weights, unaveraged.model.parameters()):
        assert torch.equal(w, u)

    resumed = stopped_and_resumed(recipe, registry, tmp_path, before=2, after=2)
    for a, b in zip(straight.averaged.module.parameters(), resumed.averaged.module.parameters()):
        assert torch.equal(a, b)
    for a, b in zip(straight.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)

    straight.save(score=False)
    straight.run.recipe.write_text(dump_recipe(recipe))  # as train() writes it
    used = load_run(straight.run.path).model
    for e, u in zip(expected, used.parameters()):
        assert torch.allclose(e, u, atol=1e-6)


def test_k_is_drawn_by_its_weights_and_a_resume_draws_the_same(vanilla, tmp_path):
    """tokens.weights: a K of weight 0 is never drawn, and the draws, like the uniform ones,
    come from the run's own generator, so a resumed run trains the same weights."""
    recipe, registry = load_recipe(vanilla, TINY + ["tokens.weights=[1, 0, 3]"])  # K = 1..3
    straight = Trainer(recipe, registry, RunDir.create(tmp_path, "straight"))
    drawn = [straight.train_step()["k"] for _ in range(8)]
    assert 2 not in drawn and set(drawn) <= {1, 3}
    resumed = stopped_and_resumed(recipe, registry, tmp_path, before=3, after=5)
    for a, b in zip(straight.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)


def test_augmented_batches_are_a_function_of_the_step_so_a_resume_is_exact(vanilla, tmp_path):
    """train.augment changes each training image by what it draws from the seed and the step:
    a run stopped and resumed trains the same weights as a straight one, and not the weights
    of a run without it."""
    recipe, registry = load_recipe(vanilla, TINY + ["train.augment=['flips', 'channels']"])
    straight = Trainer(recipe, registry, RunDir.create(tmp_path, "straight"))
    for _ in range(3):
        straight.train_step()
    resumed = stopped_and_resumed(recipe, registry, tmp_path, before=1, after=2)
    for a, b in zip(straight.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)
    plain, _ = load_recipe(vanilla, TINY)
    plain_run = Trainer(plain, registry, RunDir.create(tmp_path, "plain"))
    for _ in range(3):
        plain_run.train_step()
    assert not all(torch.equal(a, b) for a, b in
                   zip(straight.model.parameters(), plain_run.model.parameters()))


def test_resume_needs_a_run_directory(tmp_path):
    proc = vle_kit("run", "--resume", str(tmp_path))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert err.strip() == f"error: {tmp_path}: not a run directory (no recipe.toml)"
