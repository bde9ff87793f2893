"""Evaluation of trained runs: eval on any data set, compare, saved tokens, the report."""

import json

import attrs
import numpy as np
import pytest
import torch
from conftest import TINY, train_tiny
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from vle_kit.build import build_model, load_run
from vle_kit.cli import main
from vle_kit.errors import VleKitError
from vle_kit.evaluate import ssim
from vle_kit.recipe import load_recipe
from vle_kit.report import compare, curve_table
from vle_kit.results import Curve, Evaluation, ImageShape
from vle_kit.tokenfile import load_tokens


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A vanilla run trained for a few steps, shared by the tests of this module."""
    return train_tiny("vanilla", tmp_path_factory.mktemp("runs"))


def test_training_writes_the_report_and_every_metric(tiny_run):
    result = json.loads((tiny_run / "eval.json").read_text())
    for curve in ("vle", "vle_asked_k", "pca"):
        assert set(result[curve]) == {"mse", "psnr", "ssim", "improved"}
        assert all(len(v) == 3 for v in result[curve].values())
        assert all(0 <= s <= 1 for s in result[curve]["improved"])
    assert result["image"] == {"channels": 3, "height": 16, "width": 16}
    similarity = result["separation"]["similarity"]
    assert len(similarity["matrix"]) == 3 and -1 <= similarity["mean_off_diagonal"] <= 1
    objects = result["separation"]["objects"]
    assert 0 <= objects["tokens_on_objects"] <= 1
    page = (tiny_run / "report.html").read_text()
    assert page.count("<img src=\"data:image/png;base64,") >= 3, "figures are inlined"
    assert "[model.memory]" in page and "mean off-diagonal" in page.lower()


def test_eval_on_digits_adapts_channels_and_probes_every_prefix(tiny_run, capsys):
    code = main(["eval", str(tiny_run), "--data", "digits", "--set", "data.train=60",
                 "--set", "data.test=30"])
    assert code == 0
    out = tiny_run / "eval_digits"
    result = json.loads((out / "eval.json").read_text())
    assert result["data"] == "digits" and result["test_images"] == 30
    probe = result["separation"]["images"]["class"]
    assert len(probe["probe_tokens"]) == len(probe["probe_pca"]) == 3
    assert all(0 <= a <= 1 for a in probe["probe_tokens"] + probe["probe_pca"])
    assert (out / "probe.png").is_file() and (out / "report.html").is_file()
    assert "tokens probe" in capsys.readouterr().out


def test_eval_with_more_tokens_than_trained(tiny_run, tmp_path):
    assert main(["eval", str(tiny_run), "--set", "eval.tokens=5", "-o", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "eval.json").read_text())
    assert result["tokens"] == [1, 2, 3, 4, 5]


def write_pngs(folder, count, size=20):
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (size, size + 4, 3), dtype=np.uint8)).save(
            folder / f"img{i}.png")
    return folder


def test_encode_then_decode_gives_the_same_reconstruction(tiny_run, tmp_path, capsys):
    images = write_pngs(tmp_path / "in", 3)
    saved = tmp_path / "tokens.safetensors"
    assert main(["encode", str(tiny_run), str(images), "-o", str(saved), "--recons"]) == 0
    tensors, meta = load_tokens(saved)
    assert tensors["tokens"].shape == (3, 3, 4, 4, 4) and meta["k"] == 3
    assert tensors["recons"].shape == (3, 3, 3, 16, 16)
    model = load_run(tiny_run).model
    for j in (1, 2, 3):  # every prefix decodes to the reconstruction after j tokens
        decoded = model.decode(tensors["tokens"][:, :j], meta["k"])
        assert torch.allclose(decoded.recons[:, -1], tensors["recons"][:, j - 1], atol=1e-5)
    out = tmp_path / "out"
    assert main(["decode", str(saved), "-o", str(out), "--tokens", "2"]) == 0
    png = torch.from_numpy(np.array(Image.open(out / "img0.png"))).permute(2, 0, 1).float()
    expected = (tensors["recons"][0, 1].clamp(-1, 1) + 1) / 2 * 255
    assert (png - expected).abs().max() <= 1.0


def test_decode_refuses_more_tokens_than_saved(tiny_run, tmp_path, capsys):
    images = write_pngs(tmp_path / "in", 1)
    saved = tmp_path / "t.safetensors"
    assert main(["encode", str(tiny_run), str(images), "-o", str(saved), "--tokens", "2"]) == 0
    assert main(["decode", str(saved), "-o", str(tmp_path / "o"), "--tokens", "3"]) == 1
    assert "holds 2 tokens per image" in capsys.readouterr().err


def test_a_corrupt_token_file_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not safetensors")
    assert main(["decode", str(bad), "-o", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {bad}: not a readable") and err.count("\n") == 1


def test_a_head_that_sees_the_image_decodes_only_with_its_masks(vanilla):
    recipe, registry = load_recipe(vanilla, TINY + ["model.saliency.use=deconstructor",
                                                    "model.combiner.use=masked_sum"])
    model = build_model(recipe, registry).eval()
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        out = model(x, 3)
    with pytest.raises(VleKitError, match="masks must be saved with the tokens"):
        model.decode(out.tokens, 3)
    decoded = model.decode(out.tokens[:, :2], 3, out.masks[:, :2])
    assert torch.allclose(decoded.recons, out.recons[:, :2], atol=1e-6)


def fake_result(size, name):
    def curve(mse):
        return Curve(mse=mse, psnr=[0.0, 0.0], ssim=[0.0, 0.0], improved=[1.0, 1.0])

    return Evaluation(recipe=name, data="", tokens=[1, 2], floats=[64, 128], test_images=2,
                      image=ImageShape(channels=3, height=size, width=size),
                      vle=curve([0.04, 0.03]), vle_asked_k=curve([0.04, 0.03]),
                      pca=curve([0.05, 0.04]),
                      separation={"similarity": {"mean_off_diagonal": 0.1}})


def test_compare_refuses_runs_of_different_image_sizes(tmp_path):
    with pytest.raises(VleKitError, match=r"a: 3 x 32 x 32, b: 3 x 64 x 64.*one image size"):
        compare({"a": fake_result(32, "a"), "b": fake_result(64, "b")}, tmp_path)


def test_compare_charts_and_tabulates_runs(tiny_run, tmp_path, capsys):
    other = tmp_path / "other"
    other.mkdir()
    (other / "eval.json").write_text(fake_result(16, "vae").to_json())
    assert main(["compare", str(tiny_run), str(other), "-o", str(tmp_path / "cmp")]) == 0
    table = (tmp_path / "cmp" / "compare.md").read_text()
    assert "| tiny |" not in table and "| vanilla |" in table and "| vae |" in table
    assert "PCA (64 floats per token)" in table and "PCA (64 floats per token, shapes)" in table
    assert (tmp_path / "cmp" / "compare.png").stat().st_size > 0


def test_compare_says_which_run_has_no_eval(tmp_path, capsys):
    assert main(["compare", str(tmp_path), "-o", str(tmp_path / "cmp")]) == 1
    assert f"{tmp_path}: no eval.json" in capsys.readouterr().err


def test_training_logs_its_metrics_to_tensorboard_too(tiny_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    board = EventAccumulator(str(tiny_run / "tensorboard")).Reload()
    logged = [json.loads(line) for line in (tiny_run / "metrics.jsonl").read_text().splitlines()]
    loss_steps = [row["step"] for row in logged if "loss" in row]
    assert [e.step for e in board.Scalars("loss")] == loss_steps
    assert [e.step for e in board.Scalars("test_mse")] == [2, 4]


def test_an_old_eval_json_is_one_line(tmp_path, capsys):
    (tmp_path / "eval.json").write_text(json.dumps({"tokens": [1], "vle": {"mse": [0.1]}}))
    assert main(["compare", str(tmp_path), "-o", str(tmp_path / "cmp")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "eval.json format 1" in err and "vle-kit eval" in err


def test_eval_json_round_trips(tiny_run):
    text = (tiny_run / "eval.json").read_text()
    assert Evaluation.from_json(text).to_json() == text


def test_adaptive_encoding_stops_each_image_at_its_threshold(tiny_run, tmp_path, capsys):
    """Every image meets the threshold or used K tokens; decoding the file gives each image's
    reconstruction at its own length; a looser threshold never gives more tokens."""
    images = write_pngs(tmp_path / "in", 6)
    model = load_run(tiny_run).model
    from vle_kit.evaluate import encode_images
    from vle_kit.images import image_files, read_images

    pixels = read_images(image_files(images), 16)
    full = encode_images(model, pixels, 3, torch.device("cpu"))
    errors = (full.recons - torch.stack([(p.float() / 127.5 - 1) for p in pixels])).pow(2)
    threshold = errors.flatten(1).mean(1).median().item() * 1.02
    saved = tmp_path / "adaptive.safetensors"
    assert main(["encode", str(tiny_run), str(images), "-o", str(saved), "--recons",
                 "--max-error", str(threshold)]) == 0
    tensors, meta = load_tokens(saved)
    lengths = tensors["lengths"]
    assert meta["max_error"] == threshold and tensors["tokens"].shape[1] == int(lengths.max())
    x = torch.stack([(p.float() / 127.5 - 1) for p in pixels])
    rows = torch.arange(6)
    final = tensors["recons"][rows, lengths - 1]
    met = (final - x).pow(2).flatten(1).mean(1) <= threshold
    assert (met | (lengths == 3)).all(), "each image meets the threshold or used K tokens"
    out = tmp_path / "decoded"
    assert main(["decode", str(saved), "-o", str(out)]) == 0
    for i, name in enumerate(sorted(p.stem for p in images.iterdir())):
        png = torch.from_numpy(np.array(Image.open(out / f"{name}.png"))).permute(2, 0, 1)
        expected = (final[i].clamp(-1, 1) + 1) / 2 * 255
        assert (png.float() - expected).abs().max() <= 1.0
    looser = [encode_images(model, pixels, 3, torch.device("cpu"), max_error=e).lengths
              for e in (threshold / 2, threshold, threshold * 2, 1e9)]
    assert all((a >= b).all() for a, b in zip(looser, looser[1:]))
    assert (looser[-1] == 1).all()


def test_an_image_gets_the_same_tokens_whatever_its_batch(tiny_run):
    model = load_run(tiny_run).model
    x = torch.rand(5, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        errors = (model(x, 3).recons - x[:, None]).pow(2).flatten(2).mean(2)
    threshold = errors[:, 1].median().item()
    together = model.encode(x, 3, max_error=threshold)
    for i in range(5):
        alone = model.encode(x[i:i + 1], 3, max_error=threshold)
        assert alone.lengths.item() == together.lengths[i].item()
        length = alone.lengths.item()
        assert torch.allclose(alone.tokens[0, :length], together.tokens[i, :length], atol=1e-5)
        assert torch.allclose(alone.recons[0], together.recons[i], atol=1e-5)


@pytest.mark.parametrize("value", ["-1", "nan", "inf"])
def test_a_bad_threshold_is_one_line(tiny_run, tmp_path, capsys, value):
    images = write_pngs(tmp_path / "in", 1)
    code = main(["encode", str(tiny_run), str(images), "-o", str(tmp_path / "t.safetensors"),
                 "--max-error", value])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1
    assert err.startswith("error: --max-error: must be a finite number from 0, got")
    assert not (tmp_path / "t.safetensors").exists()


def test_eval_reports_the_coverage_curve_and_the_savings(tiny_run, tmp_path, capsys):
    assert main(["eval", str(tiny_run), "--max-error", "0.05", "-o", str(tmp_path)]) == 0
    result = Evaluation.read(tmp_path / "eval.json")
    adaptive = result.adaptive
    assert [s.k for s in adaptive.savings] == [1, 2, 3]
    assert any(p.max_error == 0.05 for p in adaptive.points)
    for p in adaptive.points:
        assert sum(p.tokens) == result.test_images and 1 <= p.mean_tokens <= 3
    assert adaptive.complexity == "objects" and -1 <= adaptive.spearman <= 1
    assert "adaptive mean tokens" in capsys.readouterr().out
    assert (tmp_path / "adaptive.png").is_file() and (tmp_path / "lengths.png").is_file()


@pytest.mark.parametrize("head,counted", [("conv", False), ("inherent", False),
                                          ("deconstructor", True)])
def test_masks_that_look_at_the_image_are_counted_beside_pca(vanilla, head, counted):
    from vle_kit.build import load_data
    from vle_kit.evaluate import evaluate

    recipe, registry = load_recipe(vanilla, TINY + [f"model.saliency.use={head}",
                                                    "model.combiner.use=masked_sum"])
    model = build_model(recipe, registry)
    train_set, test_set = load_data(recipe, registry)
    result = evaluate(model, train_set, test_set, k=2, floats_per_token=64,
                      device=torch.device("cpu"), probe_images=16)
    assert model.saliency.from_tokens is not counted
    assert result.mask_floats == (16 * 16 if counted else 0)
    assert (result.pca_with_masks is not None) is counted
    if counted:  # 64 + 256 floats a token: PCA keeps more, so it is closer
        assert all(a <= b for a, b in zip(result.pca_with_masks.mse, result.pca.mse))


def test_a_mask_model_on_scenes_is_scored_on_how_it_splits_them(vanilla):
    from vle_kit.build import load_data
    from vle_kit.evaluate import evaluate

    recipe, registry = load_recipe(vanilla, TINY + ["model.saliency.use=inherent",
                                                    "model.combiner.use=masked_fill"])
    train_set, test_set = load_data(recipe, registry)
    result = evaluate(build_model(recipe, registry), train_set, test_set, k=3,
                      floats_per_token=64, device=torch.device("cpu"), probe_images=16)
    scores = attrs.asdict(result.masks)
    assert set(scores) == {"collapse_share", "fg_ari", "count_accuracy", "count_errors",
                           "merged_share", "missed_pixels", "resumed_share", "label_tells_token"}
    assert -1 <= scores.pop("fg_ari") <= 1  # an adjusted index: below 0 when worse than chance
    assert set(scores.pop("label_tells_token")) == set(test_set.labels)  # shape, colour
    assert all(0 <= v <= 1 for v in scores.pop("missed_pixels").values())
    errors = scores.pop("count_errors")
    assert errors["too many"] + errors["too few"] == pytest.approx(1 - scores["count_accuracy"])
    assert all(0 <= v <= 1 for v in scores.values())


@pytest.mark.parametrize("names", [("flips",), ("channels",), ("flips", "channels")])
def test_pca_of_augmented_images_is_pca_of_their_every_version(names):
    """PCA.fit with `augment` (from the stored images' moments) spans what PCA fitted on every
    augmented copy spans, wherever that copy's spectrum has a gap (the symmetries make some
    eigenvalues equal, and a cut inside equal ones may take any of their vectors)."""
    from vle_kit.data import AUGMENTATIONS
    from vle_kit.evaluate import PCA

    images = torch.randint(0, 256, (30, 3, 4, 4), generator=torch.Generator().manual_seed(1),
                           dtype=torch.uint8)
    copies = [images]
    for name in names:
        copies = [v for u in copies for v in AUGMENTATIONS[name](u)]
    copies = torch.cat(copies)
    x = (copies.double() / 127.5 - 1).flatten(1)
    spectrum = torch.linalg.eigvalsh(torch.cov(x.T)).flip(0)
    fitted, explicit = PCA.fit(images, 48, names), PCA.fit(copies, 48)
    assert torch.allclose(fitted.mean, explicit.mean, atol=1e-6)
    cuts = [k for k in range(1, 48) if spectrum[k - 1] - spectrum[k] > 1e-3 * spectrum[0]]
    assert len(cuts) > 5
    for k in cuts:
        projector = fitted.basis[:, :k] @ fitted.basis[:, :k].T
        assert torch.allclose(projector, explicit.basis[:, :k] @ explicit.basis[:, :k].T,
                              atol=1e-3)


def test_a_run_that_augments_is_also_set_beside_pca_of_its_augmented_images(vanilla):
    from vle_kit.build import load_data
    from vle_kit.evaluate import evaluate

    recipe, registry = load_recipe(vanilla, TINY)
    model = build_model(recipe, registry)
    train_set, test_set = load_data(recipe, registry)
    plain = evaluate(model, train_set, test_set, k=2, floats_per_token=64,
                     device=torch.device("cpu"), probe_images=16)
    flipped = evaluate(model, train_set, test_set, k=2, floats_per_token=64,
                       device=torch.device("cpu"), probe_images=16, augment=("flips",))
    assert plain.pca_augmented is None and flipped.pca == plain.pca
    assert flipped.pca_augmented.mse != plain.pca.mse
    assert Evaluation.from_json(flipped.to_json()).pca_augmented == flipped.pca_augmented
    header, rows = curve_table(flipped)
    assert header[-1] == "PCA MSE, augmented training images"
    assert [row[-1] for row in rows] == [f"{m:.5f}" for m in flipped.pca_augmented.mse]
    assert len(curve_table(plain)[0]) == len(header) - 1


@settings(deadline=None, max_examples=20)
@given(height=st.integers(6, 40), width=st.integers(6, 40), k=st.integers(1, 3),
       noise=st.floats(0.0, 2.0), seed=st.integers(0, 2**16), block=st.integers(1, 4))
def test_ssim_is_torchmetrics_ssim(height, width, k, noise, seed, block):
    """Whatever the block of images computed at once."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    g = torch.Generator().manual_seed(seed)
    x = torch.rand(3, 3, height, width, generator=g) * 2 - 1
    recons = x[:, None] + noise * torch.randn(3, k, 3, height, width, generator=g)
    expected = structural_similarity_index_measure(
        recons.clamp(-1, 1).flatten(0, 1), x.repeat_interleave(k, 0), data_range=2.0,
        reduction="none").view(3, k)
    torch.testing.assert_close(ssim(x, recons, block), expected, atol=1e-5, rtol=0)
