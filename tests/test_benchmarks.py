"""The speed benchmark runs end to end on a tiny model and writes every number it prints."""

import json
import tomllib
from pathlib import Path

import pytest
import torch
from conftest import RECIPES, ROOT

from benchmarks import merges
from benchmarks.speed import growth, main, up_to_k
from vle_kit.recipe import load_recipe


@pytest.mark.slow
def test_speed_benchmark_writes_every_measure(tmp_path, capsys):
    """Under the AVX2 kernels, so the switch that sets them is tested too."""
    main(["--quick", "--isa", "avx2", "--recipes", str(ROOT / "recipes" / "vanilla.toml"),
          "--out", str(tmp_path),
          "--set", "model.width=8", "--set", "model.memory.hidden=4", "--set", "train.batch=4"])
    result = json.loads((tmp_path / "speed.json").read_text())["by_isa"]["avx2"]
    assert result["host"]["aten_isa"] == "AVX2", "--isa avx2 reaches the measuring process"
    assert result["host"]["kernels_forced"]["ONEDNN_MAX_CPU_ISA"] == "AVX2"
    (row,) = result["recipes"]
    assert row["flops_per_step"] > 0 and row["train_images_per_s"] > 0
    assert 0 < row["share_of_matmul"] and row["peak_rss_mb"] > 0
    assert sorted(map(int, result["seconds_per_step_by_k"])) == [1, 2, 4, 8, 16]
    assert sorted(map(int, result["seconds_per_step_by_size"])) == [32, 64, 128]
    assert result["overhead"]["hand_written_s"] > 0
    assert result["profile"]["step_s"] > 0 and "decoder backward" in result["profile"]["modules_s"]
    assert result["host"]["aten_isa"] and result["host"]["threads"] >= 1
    out = capsys.readouterr().out
    assert "framework overhead" in out and "| module | ms | share |" in out


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_the_speed_probes_that_fix_k_load_for_every_recipe(path):
    """A recipe's tokens.min may be above the K a probe asks for (8 in fixed_k and inherent)
    and its weights sized to its own K; the probe's overrides still make a valid recipe."""
    for k in (1, 16):
        recipe, _ = load_recipe(path, up_to_k(k))
        assert (recipe.tokens.min, recipe.tokens.max) == (1, k)


def test_growth_compares_time_with_work():
    assert growth({1: 1.0, 2: 2.0}, 1) == "1->2: 2.00x time for 2x work"
    assert growth({32: 1.0, 64: 3.0}, 2) == "32->64: 3.00x time for 4x work"


def test_photo_patches_keep_each_photograph_on_one_side(tmp_path):
    from benchmarks.photos import write_patches

    counts = write_patches(tmp_path, size=32, stride=64)
    names = {split: {p.name.rsplit("_", 1)[0] for p in (tmp_path / split).iterdir()}
             for split in ("train", "test")}
    assert names["train"] == set(counts["train"]) and names["test"] == set(counts["test"])
    assert not names["train"] & names["test"]
    assert all(n > 0 for per in counts.values() for n in per.values())


def test_every_ablation_variant_is_read_back_from_its_recipe():
    """Each row's overrides give a valid recipe, and `--record` would file its run under it."""
    from benchmarks.ablation import RECIPE, VARIANTS, changes_of, overrides
    from vle_kit.recipe import dump_recipe, load_recipe

    for name, changes in VARIANTS.items():
        recipe, _ = load_recipe(Path(RECIPE), overrides(changes))
        assert changes_of(tomllib.loads(dump_recipe(recipe))) == set(changes), name


def first_row(text: str) -> dict[str, str]:
    """The k = 1 row of a printed recipe table, by column name."""
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("| k |")).strip("| ").split(" | ")
    first = next(line for line in lines if line.startswith("| 1 |")).strip("| ").split(" | ")
    assert len(header) == len(first)
    return dict(zip(header, first))


def test_a_run_that_augments_is_tabled_beside_pca_of_its_augmented_images_too():
    from benchmarks.recipes import table

    entry = json.loads((ROOT / "benchmarks" / "results" / "recipes.json").read_text())["vanilla"][0]
    entry["eval"]["pca_augmented"] = None  # as a run that does not augment has it
    assert "augmented" not in table("vanilla", [entry])
    pca = entry["eval"]["pca"]
    entry["eval"]["pca_augmented"] = {**pca, "mse": [m / 2 for m in pca["mse"]]}
    row = first_row(table("vanilla", [entry]))
    vle, plain = entry["eval"]["vle"]["mse"][0], pca["mse"][0]
    assert row["PCA MSE"] == f"{plain:.4f}" and row["prefix / PCA"] == f"{vle / plain:.2f}"
    assert row["PCA MSE, augmented"] == f"{plain / 2:.4f}"
    assert row["prefix / it"] == f"{2 * vle / plain:.2f}"


def test_several_seeds_are_tabled_with_the_worst_seeds_prefix_beside_pca():
    """The prefix bar (within 1.5x PCA) holds for a run, not for the mean of the seeds."""
    from benchmarks.recipes import table

    entry = json.loads((ROOT / "benchmarks" / "results" / "recipes.json").read_text())["vanilla"][0]
    assert "prefix / PCA, worst seed" not in first_row(table("vanilla", [entry]))
    worse = json.loads(json.dumps(entry))
    worse["eval"]["vle"]["mse"] = [m * 1.5 for m in entry["eval"]["vle"]["mse"]]
    row = first_row(table("vanilla", [entry, worse]))
    vle, plain = entry["eval"]["vle"]["mse"][0], entry["eval"]["pca"]["mse"][0]
    assert row["prefix / PCA"] == f"{1.25 * vle / plain:.2f}"
    assert row["prefix / PCA, worst seed"] == f"{1.5 * vle / plain:.3f}"


def test_a_timed_run_is_tabled_with_the_matmul_rate_around_it():
    """The same kind of host drifts by a third: a timed run's minutes carry the host's matmul
    rate, measured under the run's own kernels."""
    from benchmarks.recipes import matmul_gflops, table

    entry = json.loads((ROOT / "benchmarks" / "results" / "recipes.json").read_text())["vanilla"][0]
    rate = matmul_gflops({})
    assert rate > 0
    first = table("vanilla", [{**entry, "timed": True, "matmul_gflops": [rate, 2 * rate]}])
    assert f"matmul {rate:.0f}-{2 * rate:.0f} GFLOP/s" in first.splitlines()[0]
    assert "matmul" not in table("vanilla", [{**entry, "timed": True}])  # older entries


def test_merges_tell_touching_pairs_taken_together_from_pairs_apart():
    """Objects 1 and 2 touch and one mask holds both; object 3 stands apart in its own mask."""
    objects = torch.zeros(1, 8, 8, dtype=torch.long)
    objects[0, :3, :2], objects[0, :3, 2:4], objects[0, 6:, 6:] = 1, 2, 3
    masks = torch.stack([(objects == 1) | (objects == 2), objects == 3, objects == 0], 1)
    result = merges.breakdown(masks[:, :, None].float(), objects)
    assert result["touching"] == {"pairs": 1, "merged": 1.0}
    assert result["apart"] == {"pairs": 2, "merged": 0.0}
    assert result["smaller_area"]["0-20"] == {"pairs": 3, "merged": pytest.approx(1 / 3)}
    assert list(result["objects"]) == [3] and result["objects"][3]["scenes"] == 1
    assert 0 < result["objects"][3]["fg_ari"] < 1  # the merge costs, the object apart does not


def test_results_keep_the_entries_written_since_they_were_read(tmp_path):
    """recipes.json and ablation.json are saved an entry at a time, read again under a lock:
    an entry another benchmark wrote in the meantime stays."""
    from benchmarks.recipes import load, save

    out = tmp_path / "recipes.json"
    save(out, "a", [{"seed": 0}])
    save(out, "b", [{"seed": 1}])  # another benchmark, finishing after the first read `out`
    save(out, "a", [{"seed": 2}])
    assert load(out) == {"a": [{"seed": 2}], "b": [{"seed": 1}]}


def test_a_failed_run_keeps_the_other_seeds_runs(tmp_path, monkeypatch):
    """One seed's run failing exits with an error naming it, and the entry keeps the runs that
    finished: two seeds run at once should not lose one's hours to the other's failure."""
    import benchmarks.recipes as recipes

    done = json.loads((ROOT / "benchmarks" / "results" / "recipes.json").read_text())["vanilla"][0]

    def run_recipe(recipe, overrides, isa, parallel):
        if overrides[-1] == "train.seed=1":
            raise recipes.RunFailed(f"{recipe} {' '.join(overrides)}: vle-kit run exited 1")
        return {**done, "overrides": overrides}

    monkeypatch.setattr(recipes, "RESULTS", tmp_path)
    monkeypatch.setattr(recipes, "run_recipe", run_recipe)
    with pytest.raises(SystemExit) as failed:
        recipes.main(["recipes/vanilla.toml", "--seeds", "0", "1", "--parallel", "--name", "v"])
    assert "train.seed=1: vle-kit run exited 1" in str(failed.value.code)
    (kept,) = recipes.load(tmp_path / "recipes.json")["v"]
    assert kept["overrides"] == ["train.seed=0"]


def test_an_ablation_keeps_the_runs_that_finished_beside_a_failed_one(tmp_path, monkeypatch):
    """The ablation shares `run_all`: a variant keeps its finished seeds, the failure exits."""
    import benchmarks.ablation as ablation
    from benchmarks.recipes import load

    done = json.loads((ROOT / "benchmarks" / "results" / "recipes.json").read_text())["vanilla"][0]
    monkeypatch.setattr(ablation, "RESULTS", tmp_path)
    monkeypatch.setattr(ablation, "run_all", lambda jobs, isa, parallel: (
        [done, None], [f"{jobs[1][0]} {' '.join(jobs[1][1])}: vle-kit run exited 1"]))
    with pytest.raises(SystemExit) as failed:
        ablation.main(["--only", "gain-shape tokens", "--seeds", "0", "1"])
    assert "train.seed=1: vle-kit run exited 1" in str(failed.value.code)
    assert load(tmp_path / "ablation.json")["gain-shape tokens"] == [done]


def test_turns_time_every_recipe_in_every_turn(capsys):
    from benchmarks.turns import main as turns

    vanilla = str(ROOT / "recipes" / "vanilla.toml")
    seconds = turns([vanilla, str(ROOT / "recipes" / "inherent.toml"), "--turns", "2",
                     "--steps", "1", "--k", "2"])
    assert [len(t) for t in seconds.values()] == [2, 2] and min(map(min, seconds.values())) > 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith(f"{vanilla}: ") and "1.000x the first" in lines[1]
