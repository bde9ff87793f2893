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


def test_resume_needs_a_run_directory(tmp_path):
    proc = vle_kit("run", "--resume", str(tmp_path))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert err.strip() == f"error: {tmp_path}: not a run directory (no recipe.toml)"
