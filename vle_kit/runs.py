"""Run directories: where a run's recipe, metrics, checkpoints and results live."""

from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path

import attrs

from vle_kit.errors import VleKitError


class RunDir:
    """`runs/<timestamp>_<name>/` and the names of what goes in it."""

    def __init__(self, path: Path):
        self.path = Path(path)

    @classmethod
    def create(cls, root: Path, name: str) -> RunDir:
        stamp = time.strftime("%Y-%m-%dT%H-%M-%S")
        path = Path(root) / f"{stamp}_{name}"
        suffix = 1
        while path.exists():
            suffix += 1
            path = Path(root) / f"{stamp}_{name}-{suffix}"
        try:
            path.mkdir(parents=True)
            probe = path / ".write-test"
            probe.write_text("ok")
            probe.unlink()
        except OSError as e:
            raise VleKitError(f"{path}: cannot write the run directory ({e.strerror})") from None
        return cls(path)

    @classmethod
    def existing(cls, path: Path) -> RunDir:
        run = cls(path)
        if not run.recipe.is_file():
            raise VleKitError(f"{path}: not a run directory (no recipe.toml)")
        return run

    recipe = property(lambda self: self.path / "recipe.toml")
    metrics = property(lambda self: self.path / "metrics.jsonl")
    checkpoints = property(lambda self: self.path / "checkpoints")
    checkpoint = property(lambda self: self.path / "checkpoints" / "last.pt")
    best = property(lambda self: self.path / "checkpoints" / "best.pt")

    def step_checkpoint(self, step: int) -> Path:
        return self.checkpoints / f"step_{step:07d}.pt"
    eval_json = property(lambda self: self.path / "eval.json")
    curve_png = property(lambda self: self.path / "curve.png")
    grid_png = property(lambda self: self.path / "grid.png")
    masks_png = property(lambda self: self.path / "masks.png")
    similarity_png = property(lambda self: self.path / "similarity.png")
    probe_png = property(lambda self: self.path / "probe.png")
    report_html = property(lambda self: self.path / "report.html")
    training_png = property(lambda self: self.path / "training.png")
    adaptive_png = property(lambda self: self.path / "adaptive.png")
    lengths_png = property(lambda self: self.path / "lengths.png")
    tensorboard = property(lambda self: self.path / "tensorboard")
    info = property(lambda self: self.path / "run.json")


def command_line() -> str:
    """The command this process runs, as a person would type it again."""
    program = Path(sys.argv[0]).name
    program = "python -m vle_kit" if program == "__main__.py" else program
    return shlex.join([program, *sys.argv[1:]])


@attrs.frozen(kw_only=True)
class RunInfo:
    """run.json: how a run was made and how long its training took, over every session of it
    (a resumed run adds its time to the earlier sessions')."""

    command: str  # the command of the last session
    host: dict  # host.host_info() of the last session
    steps: int  # steps trained so far
    train_seconds: float  # wall time of training, every session summed
    sessions: int = 1

    def write(self, run: RunDir) -> None:
        run.info.write_text(json.dumps(attrs.asdict(self), indent=2))

    @classmethod
    def read(cls, run: RunDir) -> RunInfo | None:
        try:
            return cls(**json.loads(run.info.read_text()))
        except (OSError, ValueError, TypeError):
            return None


def _step(line: str) -> int | None:
    """The step of a metrics row; None for a line a killed process left half-written."""
    try:
        return json.loads(line).get("step")
    except (json.JSONDecodeError, AttributeError):
        return None


class MetricsLog:
    """metrics.jsonl, one JSON object per row, and the same numbers as TensorBoard scalars in
    `board` (a folder); rows past a resumed step are dropped from both."""

    def __init__(self, path: Path, board: Path, resume_step: int | None = None,
                 enabled: bool = True):
        self.path, self.file, self.board = path, None, None
        if not enabled:  # a rank other than 0 under torchrun
            return
        if resume_step is not None and path.exists():
            rows = [line for line in path.read_text().splitlines()
                    if _step(line) is not None and _step(line) <= resume_step]
            path.write_text("".join(r + "\n" for r in rows))
        self.file = path.open("a")
        from torch.utils.tensorboard import SummaryWriter  # slow to import; only where it writes

        self.board = SummaryWriter(str(board), purge_step=None if resume_step is None
                                   else resume_step + 1)

    def write(self, row: dict) -> None:
        if self.file:
            self.file.write(json.dumps(row) + "\n")
            self.file.flush()
            for name, value in row.items():
                if name != "step" and isinstance(value, (int, float)) \
                        and not isinstance(value, bool):
                    self.board.add_scalar(name, value, row["step"])

    def close(self) -> None:
        if self.file:
            self.file.close()
            self.board.close()
