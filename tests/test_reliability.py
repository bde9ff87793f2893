"""Faults a long run meets: signals, kill -9, changed recipes, NaN losses, bad recipes, disks."""

import json
import signal
import string
import time

import pytest
import tomli_w
from conftest import TINY
from hypothesis import example, given
from hypothesis import strategies as st
from test_cli import only_run, sets, vle_kit

from vle_kit import checkpoint
from vle_kit.errors import RecipeError
from vle_kit.plugins import load_registry
from vle_kit.recipe import load_recipe, validate

slow = pytest.mark.slow


def logged_step(root) -> int:
    """The highest step in the run's metrics.jsonl so far (0 if none)."""
    steps = [0]
    for log in root.glob("*/metrics.jsonl"):
        for line in log.read_text().splitlines():
            try:
                steps.append(json.loads(line)["step"])
            except (json.JSONDecodeError, KeyError):
                pass
    return max(steps)


def wait_for_step(root, step, proc, timeout=120):
    """Wait until the run under `root` has logged a step >= `step`."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if logged_step(root) >= step:
            return
        time.sleep(0.02)
    if proc.poll() is not None:
        raise AssertionError(f"the run exited with {proc.returncode}: {proc.stderr.read()}")
    raise AssertionError("the run did not log in time")


@slow
def test_sigterm_and_a_second_sigint_save_and_exit_nonzero(vanilla, tmp_path):
    proc = vle_kit("run", str(vanilla), "--runs", str(tmp_path),
                   *sets(*TINY, "train.steps=100000"))
    try:
        wait_for_step(tmp_path, 4, proc)
    except AssertionError:
        proc.kill()
        raise
    proc.send_signal(signal.SIGTERM)
    proc.send_signal(signal.SIGINT)  # a second request while the first is being served
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "SIGTERM at step" in err or "SIGINT at step" in err
    assert "Traceback" not in err
    state = checkpoint.load(only_run(tmp_path) / "checkpoints" / "last.pt")
    assert state["step"] >= 4


@slow
def test_kill_9_at_any_moment_leaves_a_loadable_checkpoint(vanilla, tmp_path):
    args = sets(*TINY, "train.steps=100000", "train.checkpoint_every=1", "train.log_every=1")
    proc = vle_kit("run", str(vanilla), "--runs", str(tmp_path), *args)
    try:
        wait_for_step(tmp_path, 3, proc)
        run = only_run(tmp_path)
        steps = []
        for delay in (0.0, 0.13, 0.29, 0.41):
            time.sleep(delay)
            proc.kill()
            proc.wait()
            steps.append(checkpoint.load(run / "checkpoints" / "last.pt")["step"])
            left = set((run / "checkpoints").glob(".*.tmp"))
            proc = vle_kit("run", "--resume", str(run))
            wait_for_step(tmp_path, steps[-1] + 2, proc)  # the resumed run is under way
            assert not left & set((run / "checkpoints").glob(".*.tmp")), "leftovers are removed"
    finally:
        proc.kill()
        proc.wait()
    assert steps == sorted(steps)


def test_leftover_temporary_files_are_removed(tmp_path):
    (tmp_path / ".last.pt.abc.tmp").write_bytes(b"half a checkpoint")
    (tmp_path / "last.pt").write_bytes(b"kept")
    assert [p.name for p in checkpoint.clean_temporary(tmp_path)] == [".last.pt.abc.tmp"]
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


@slow
def test_keeps_the_last_n_and_the_best(vanilla, tmp_path):
    proc = vle_kit("run", str(vanilla), "--runs", str(tmp_path),
                   *sets(*TINY, "train.steps=6", "train.checkpoint_every=1", "train.keep=2"))
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    folder = only_run(tmp_path) / "checkpoints"
    assert sorted(p.name for p in folder.iterdir()) == [
        "best.pt", "last.pt", "step_0000005.pt", "step_0000006.pt"]
    rows = [json.loads(line) for line in (folder.parent / "metrics.jsonl").read_text().splitlines()]
    scores = [r["test_mse"] for r in rows if "test_mse" in r]
    assert len(scores) == 6
    assert checkpoint.load(folder / "best.pt")["best"] == pytest.approx(min(scores))


@slow
def test_resume_with_a_changed_recipe(vanilla, tmp_path):
    proc = vle_kit("run", str(vanilla), "--runs", str(tmp_path), *sets(*TINY))
    assert proc.wait(timeout=300) == 0
    run = str(only_run(tmp_path))

    def resume(*args):
        p = vle_kit("run", "--resume", run, *args)
        out, err = p.communicate(timeout=300)
        return p.returncode, err

    code, err = resume("--set", "train.steps=6")
    assert code == 1 and "the recipe changed (train.steps: 4 -> 6); pass --allow-changes" in err
    code, err = resume("--set", "model.width=8", "--allow-changes")
    assert code == 1 and "was written by a different recipe (model.width: 16 -> 8)" in err
    code, err = resume("--set", "train.steps=6", "--allow-changes")
    assert code == 0, err
    assert checkpoint.load(only_run(tmp_path) / "checkpoints" / "last.pt")["step"] == 6


NAN_COMPOSER = '''
import torch
from vle_kit import hookimpl
from vle_kit.interfaces import Composer

CALLS = [0]


class NaNOnThirdCall(Composer):
    def forward(self, x, state):
        CALLS[0] += self.training and not x.is_meta  # the size check's pass on the meta device
        return x * float("nan") if self.training and CALLS[0] == 3 else x - state.recon


@hookimpl
def register_composers(register):
    register("nan_third", NaNOnThirdCall)
'''


@slow
@pytest.mark.parametrize("on_nan", ["stop", "skip"])
def test_nan_loss(vanilla, tmp_path, on_nan):
    (tmp_path / "nan_mode.py").write_text(NAN_COMPOSER)
    runs = tmp_path / "runs"
    proc = vle_kit("run", str(vanilla), "--runs", str(runs), "-p", str(tmp_path / "nan_mode.py"),
                   *sets(*TINY, "tokens.max=1", "train.step_weights=[]",
                         "model.composer.use=nan_third",
                         "train.checkpoint_every=1", f"train.on_nan={on_nan}"))
    out, err = proc.communicate(timeout=300)
    run = only_run(runs)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    if on_nan == "stop":
        assert proc.returncode == 1
        assert "step 3: the loss is nan (final=nan, steps=nan)" in err
        assert "last good checkpoint is" in err and "Traceback" not in err
        assert checkpoint.load(run / "checkpoints" / "last.pt")["step"] == 2
    else:
        assert proc.returncode == 0, err
        assert [r["step"] for r in rows if "skipped" in r] == [3]
        assert checkpoint.load(run / "checkpoints" / "last.pt")["step"] == 4


@slow
def test_an_unwritable_run_directory_fails_at_start(vanilla, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    proc = vle_kit("run", str(vanilla), "--runs", str(blocker / "runs"))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert err.startswith(f"error: {blocker}/runs/") and "cannot write the run directory" in err


REGISTRY = load_registry()
KEYS = ["recipe", "model", "tokens", "data", "train", "mask_loss", "use", "width", "token",
        "memory", "composer", "saliency", "combiner", "hidden", "size", "min", "max", "steps",
        "lr", "batch", "seed", "weight", "plugins", "name", "kernel", "sharpness"]
scalars = (st.integers(-10**6, 10**6) | st.floats(allow_nan=True) | st.booleans()
           | st.text(string.printable, max_size=8) | st.sampled_from(
               ["convlstm", "gru", "residual", "shapes", "inherent", "sum", "binarize", "cpu"]))
tables = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=5), inner,
                                        max_size=5), max_leaves=25)


@given(st.dictionaries(st.sampled_from(KEYS), tables, max_size=6))
@example(table={"recipe": {"\n": 0}})  # a key's newline once split its line in two
def test_random_recipes_only_ever_raise_recipe_errors(table):
    try:
        validate(table, REGISTRY)
    except RecipeError as e:
        assert e.problems and all("\n" not in p for p in e.problems)


def as_toml(table: dict) -> str:
    try:
        return tomli_w.dumps(table)
    except (TypeError, ValueError):
        return ""


@given(st.text(max_size=200) | st.dictionaries(st.sampled_from(KEYS), tables, max_size=6)
       .map(as_toml))
def test_random_toml_text_only_ever_raises_recipe_errors(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("fuzz") / "r.toml"
    path.write_text(text)
    try:
        load_recipe(path)
    except RecipeError as e:
        assert e.problems and all("\n" not in p for p in e.problems)


def test_a_half_written_metrics_line_is_dropped_on_resume(tmp_path):
    from vle_kit.runs import MetricsLog

    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.0}\n{"step": 3, "lo')
    MetricsLog(path, tmp_path / "tensorboard", resume_step=2).close()
    assert path.read_text() == '{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.0}\n'


def test_a_resumed_run_overwrites_its_tensorboard_steps_past_the_checkpoint(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from vle_kit.runs import MetricsLog

    path, board = tmp_path / "metrics.jsonl", tmp_path / "tensorboard"
    log = MetricsLog(path, board)
    for step in range(1, 5):
        log.write({"step": step, "loss": 1.0})
    log.close()
    log = MetricsLog(path, board, resume_step=2)
    for step in (3, 4):
        log.write({"step": step, "loss": 0.5})
    log.close()
    scalars = EventAccumulator(str(board)).Reload().Scalars("loss")
    assert [(e.step, e.value) for e in scalars] == [(1, 1.0), (2, 1.0), (3, 0.5), (4, 0.5)]
