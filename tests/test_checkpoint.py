"""Checkpoints: round trip under weights_only, atomic replacement, one-line refusals."""

import os
import pickle

import pytest
import torch

from vle_kit import checkpoint
from vle_kit.errors import VleKitError


def test_round_trip_with_weights_only(tmp_path):
    path = tmp_path / "c" / "last.pt"
    state = {"step": 3, "model": {"w": torch.arange(4.0)}, "recipe": "x = 1\n",
             "sampler": torch.Generator().get_state()}
    checkpoint.save(state, path)
    loaded = checkpoint.load(path)
    assert loaded["step"] == 3 and torch.equal(loaded["model"]["w"], torch.arange(4.0))
    assert loaded["format_version"] == checkpoint.FORMAT_VERSION
    assert os.listdir(path.parent) == ["last.pt"], "no temporary file is left behind"


def test_a_failed_save_keeps_the_previous_checkpoint(tmp_path):
    path = tmp_path / "last.pt"
    checkpoint.save({"step": 1}, path)
    with pytest.raises(Exception):
        checkpoint.save({"step": 2, "bad": lambda: None}, path)  # cannot be pickled
    assert checkpoint.load(path)["step"] == 1
    assert os.listdir(tmp_path) == ["last.pt"]


class Exploit:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


@pytest.mark.parametrize("content,problem", [
    (b"", "not a readable vle_kit checkpoint"),
    (b"garbage" * 10, "not a readable vle_kit checkpoint"),
    (pickle.dumps(Exploit()), "not a readable vle_kit checkpoint"),
])
def test_bad_files_are_refused_in_one_line(tmp_path, monkeypatch, content, problem):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "last.pt"
    path.write_bytes(content)
    with pytest.raises(VleKitError) as caught:
        checkpoint.load(path)
    assert str(caught.value).startswith(f"{path}: {problem}")
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "pwned").exists()


def test_truncated_checkpoint_is_refused(tmp_path):
    path = tmp_path / "last.pt"
    checkpoint.save({"step": 1, "w": torch.zeros(1000)}, path)
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(VleKitError, match="not a readable vle_kit checkpoint"):
        checkpoint.load(path)


def test_pickled_code_inside_a_torch_file_is_refused(tmp_path):
    path = tmp_path / "last.pt"
    torch.save({"format_version": checkpoint.FORMAT_VERSION, "x": Exploit()}, path)
    with pytest.raises(VleKitError, match="not a readable vle_kit checkpoint"):
        checkpoint.load(path)


def test_other_torch_files_are_not_checkpoints(tmp_path):
    path = tmp_path / "w.pt"
    torch.save({"w": torch.zeros(2)}, path)
    with pytest.raises(VleKitError, match="not a vle_kit checkpoint of format 1"):
        checkpoint.load(path)


def test_every_global_generator_survives_a_checkpoint(tmp_path):
    import random

    import numpy as np

    from vle_kit.checkpoint import rng_state, set_rng_state

    checkpoint.save({"rng": rng_state()}, tmp_path / "c.pt")
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    set_rng_state(checkpoint.load(tmp_path / "c.pt")["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected
