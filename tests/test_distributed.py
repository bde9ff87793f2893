"""Data parallel training under torchrun, and the device paths."""

import signal
import subprocess
import sys

import pytest
import torch
from conftest import TINY
from test_cli import only_run, sets, vle_kit

from vle_kit import checkpoint
from vle_kit.distributed import EpochBatches
from vle_kit.errors import VleKitError

STEPS = ["train.steps=6", "train.checkpoint_every=3", "data.train=64"]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
            "--master-port"]  # then a port of the test's own


def test_the_global_batch_does_not_depend_on_the_number_of_ranks():
    one = EpochBatches(64, 8, seed=3, ranks=(0, 1))
    for world in (2, 4):
        ranks = [EpochBatches(64, 8, seed=3, ranks=(r, world)) for r in range(world)]
        for step in (0, 1, 7, 8, 9, 20):  # 8 steps an epoch: crosses epochs
            shares = [r(step) for r in ranks]
            assert all(len(s) == 8 // world for s in shares)
            assert sorted(torch.cat(shares).tolist()) == sorted(one(step).tolist())


def test_each_epoch_is_a_new_shuffle_of_every_image():
    batches = EpochBatches(64, 8, seed=0, ranks=(0, 1))
    first = torch.cat([batches(s) for s in range(8)])
    second = torch.cat([batches(s) for s in range(8, 16)])
    assert sorted(first.tolist()) == sorted(second.tolist()) == list(range(64))
    assert not torch.equal(first, second)


def test_a_batch_that_does_not_split_among_ranks_is_refused():
    with pytest.raises(VleKitError, match="train.batch: 9 does not split evenly among 2 ranks"):
        EpochBatches(64, 9, seed=0, ranks=(0, 2))


def weights(run):
    return checkpoint.load(run / "checkpoints" / "last.pt")["model"]


def assert_close(a, b):
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    assert worst < 1e-4, worst


@pytest.mark.slow
def test_two_ranks_train_like_one_process_and_resume_on_one(vanilla, tmp_path):
    two = subprocess.run(TORCHRUN + ["29517", "-m", "vle_kit", "run", str(vanilla), "--runs",
                                     str(tmp_path / "two"), *sets(*TINY, *STEPS)],
                         capture_output=True, text=True, timeout=600)
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stdout.count("run directory:") == 1, "rank 0 alone speaks"
    run = only_run(tmp_path / "two")
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "best.pt", "last.pt", "step_0000003.pt", "step_0000006.pt"]
    assert (run / "eval.json").is_file() and (run / "report.html").is_file()

    proc = vle_kit("run", str(vanilla), "--runs", str(tmp_path / "one"), *sets(*TINY, *STEPS))
    assert proc.wait(timeout=300) == 0, proc.stderr.read()
    assert_close(weights(run), weights(only_run(tmp_path / "one")))

    # back to step 3, then on to step 6 on one process: the two-rank run's steps again
    (run / "checkpoints" / "step_0000003.pt").replace(run / "checkpoints" / "last.pt")
    proc = vle_kit("run", "--resume", str(run))
    assert proc.wait(timeout=300) == 0, proc.stderr.read()
    assert_close(weights(run), weights(only_run(tmp_path / "one")))


@pytest.mark.slow
def test_ctrl_c_through_torchrun_stops_every_rank_and_saves(vanilla, tmp_path):
    from test_reliability import wait_for_step

    proc = subprocess.Popen(TORCHRUN + ["29518", "-m", "vle_kit", "run", str(vanilla), "--runs",
                                        str(tmp_path), *sets(*TINY, "train.steps=100000")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_step(tmp_path, 4, proc, timeout=300)
    except AssertionError:
        proc.kill()
        raise
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert err.count("stopped: SIGINT at step") == 1, err[-2000:]
    step = int(err.split("stopped: SIGINT at step ")[1].split(":")[0])
    assert checkpoint.load(only_run(tmp_path) / "checkpoints" / "last.pt")["step"] == step


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
def test_cuda_smoke_run_and_its_checkpoint_loads_on_the_cpu(vanilla, tmp_path):
    proc = vle_kit("run", str(vanilla), "--runs", str(tmp_path),
                   *sets(*TINY, "train.device='cuda'", "train.bf16=true"))
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    state = checkpoint.load(only_run(tmp_path) / "checkpoints" / "last.pt")
    assert all(t.device.type == "cpu" for t in state["model"].values())
