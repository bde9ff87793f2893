"""Recipes: every shipped one is valid; every kind of mistake gets one clear line and exit 2."""

import pytest
from conftest import RECIPES

from vle_kit.cli import main
from vle_kit.config import Recipe
from vle_kit.errors import RecipeError
from vle_kit.plugins import load_registry
from vle_kit.recipe import load_recipe, read_recipe, to_table, validate


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_shipped_recipes_pass_check(path, capsys):
    assert main(["check", str(path)]) == 0
    assert ": ok" in capsys.readouterr().out


def test_required_keys_exist_in_every_recipe():
    for path in RECIPES:
        table = read_recipe(path)  # with the recipe it extends, if any
        for section, key in [("train", "steps"), ("train", "batch"), ("train", "lr"),
                             ("train", "seed"), ("tokens", "min"), ("tokens", "max"),
                             ("data", "use"), ("data", "size"), ("data", "train"),
                             ("data", "test")]:
            assert key in table[section], f"{path.name}: {section}.{key}"


BASE = """
[model.memory]
use = "convlstm"
[tokens]
min = 1
max = 4
[data]
use = "shapes"
size = 32
[train]
steps = 10
"""

BAD = [
    ("unknown key", BASE + "bacth = 3\n", "train.bacth: not a known key; did you mean 'batch'?"),
    ("misspelled plug-in", BASE.replace('"convlstm"', '"convlstmm"'),
     "model.memory.use: unknown memory 'convlstmm'; did you mean 'convlstm'?"),
    ("plug-in option", BASE.replace('use = "convlstm"', 'use = "convlstm"\nhiden = 3'),
     "model.memory.hiden: not a setting of memory 'convlstm'; did you mean 'hidden'?"),
    ("wrong type", BASE.replace("steps = 10", 'steps = "10"'),
     "train.steps: expected an integer, got str '10'"),
    ("bool is not an int", BASE.replace("steps = 10", "steps = true"),
     "train.steps: expected an integer, got bool True"),
    ("min > max", BASE.replace("min = 1", "min = 6"), "tokens.max: must be >= min (6), got 4"),
    ("a weight too few", BASE.replace("max = 4", "max = 4\nweights = [1, 1, 1]"),
     "tokens.weights: needs one weight for each K from min to max (4), got 3"),
    ("no K can be drawn", BASE.replace("max = 4", "max = 4\nweights = [0, 0, 0, 0]"),
     "tokens.weights: must be at least 0 with a positive sum, got [0.0, 0.0, 0.0, 0.0]"),
    ("a step weight too many", BASE.replace("[train]", "[train]\nstep_weights = [1, 0.5, 1, 1, 2]"),
     "train.step_weights: at most one weight for each step to tokens.max (4), got 5"),
    ("negative size", BASE.replace("size = 32", "size = -32"), "data.size: must be >= 8, got -32"),
    ("size not a power of two of the token", BASE.replace("size = 32", "size = 40"),
     "data.size: 40 must be model.token.size (4) times a power of two"),
    ("a stem fold past the memory's resolution", BASE + "[model]\nfold = 4\n"
     "[model.token]\nsize = 8\n",
     "model.fold: 4 x 4 pixel blocks are more than the stem's 2x halving"),
    ("a decoder both fine and unfolding 4 x 4", BASE + "[model.decoder]\nuse = 'plain'\n"
     "fine = 8\nunfold = 4\n", "model.decoder: fine = 8 draws the last doubling at the image's"),
    ("a decoder unfolding past the token's size", BASE + "[model.decoder]\nuse = 'plain'\n"
     "unfold = 4\n[model.token]\nsize = 16\n",
     "model.decoder.unfold: 4 x 4 pixel blocks are more than the 2x from the token's size"),
    ("a peak pooled over an even square", BASE + "[model.locator]\nuse = 'residual_extent'\n"
     "pool = 4\n", "model.locator.pool: must be odd (the pool centred on its pixel), got 4"),
    ("not a table", BASE + "[model]\ntoken = 3\n", "model.token: expected a table, got 3"),
    ("unknown section", BASE + "[trian]\nsteps = 3\n",
     "trian: not a known key; did you mean 'train'?"),
    ("TOML syntax", BASE + "[extra\n", "TOML syntax error: Expected ']'"),
    ("choice", BASE.replace("[train]", '[train]\ndevice = "gpu"'),
     "train.device: must be in ('auto', 'cpu', 'cuda'), got 'gpu'"),
    ("infinite learning rate", BASE + "lr = inf\n", "train.lr: expected a finite number, got inf"),
    ("mask losses without masks", BASE + '[[mask_loss]]\nuse = "binarize"\n',
     "mask_loss: 'binarize' needs masks, and model.saliency.use = 'none' makes none"),
    ("painting over scoped masks",
     BASE + '[model.saliency]\nuse = "inherent"\n[model.combiner]\nuse = "paint"\n',
     "model.saliency.scope: the 'paint' combiner paints masks over earlier ones, so the "
     "'inherent' head must not scope them to what those left; set scope = false"),
    ("batch larger than the data", BASE.replace("size = 32", "size = 32\ntrain = 16")
     + "batch = 64\n", "train.batch: 64 is more than the 16 training images"),
    ("a model too large for the machine", BASE + "[model]\nwidth = 100000000\n",
     "model.width: a training step of this model needs about"),
]


@pytest.mark.parametrize("text,expected", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_recipe_gets_one_clear_line(tmp_path, capsys, text, expected):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    assert main(["check", str(path)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if not line.startswith("error:")]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"{path}: ")
    assert expected in lines[0]


def test_toml_syntax_error_names_the_line(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[train]\nsteps = 3\nlr = = 2\n")
    with pytest.raises(RecipeError, match=r"line 3"):
        load_recipe(path)


def test_every_problem_is_reported_at_once(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(BASE.replace("steps = 10", "steps = 0\nbatch = 'x'\nlrr = 1")
                    + "[model.composer]\nuse = 'residul'\n")
    with pytest.raises(RecipeError) as caught:
        load_recipe(path)
    keys = [p.split(":")[0] for p in caught.value.problems]
    assert sorted(keys) == ["model.composer.use", "train.batch", "train.lrr", "train.steps"]


def test_set_overrides_any_key(vanilla):
    recipe, _ = load_recipe(vanilla, ["train.steps=7", "model.memory.use=gru",
                                      "model.memory.hidden=5", "train.device=cpu"])
    assert recipe.train.steps == 7
    assert recipe.model.memory.use == "gru" and recipe.model.memory.config.hidden == 5
    assert recipe.train.device == "cpu"


def test_set_problems_are_recipe_errors(vanilla, capsys):
    assert main(["check", str(vanilla), "--set", "train.stepz=3"]) == 2
    assert "train.stepz: not a known key; did you mean 'steps'?" in capsys.readouterr().err
    assert main(["check", str(vanilla), "--set", "nonsense"]) == 2
    assert "expected KEY=VALUE" in capsys.readouterr().err


def test_missing_file(tmp_path, capsys):
    assert main(["check", str(tmp_path / "nope.toml")]) == 2
    assert "nope.toml: no such file" in capsys.readouterr().err


def test_required_plugin_option_is_named(vanilla):
    with pytest.raises(RecipeError, match="data.root: missing; dataset 'image_folder' needs it"):
        load_recipe(vanilla, ["data.use=image_folder"])


def test_resolved_recipe_round_trips(vanilla):
    recipe, registry = load_recipe(vanilla)
    again = validate(to_table(recipe), registry)
    assert again == recipe
    assert isinstance(again, Recipe)


def test_augment_data_means_the_data_sets_own_augmentations(vanilla, tmp_path):
    """"data" in train.augment is replaced on validation by what the data set names, in place
    and without repeats, so a saved recipe (and a resume) reads the same names."""
    as_data = ["train.augment=['channels', 'data']"]
    shapes, registry = load_recipe(vanilla, as_data)
    assert shapes.train.augment == ("channels", "flips")
    folder, _ = load_recipe(vanilla, as_data + ["data.use=image_folder", f"data.root='{tmp_path}'"])
    assert folder.train.augment == ("channels", "flips")
    folder, _ = load_recipe(vanilla, ["train.augment=['data']", "data.use=image_folder",
                                      f"data.root='{tmp_path}'"])
    assert folder.train.augment == ("flips", "channels")
    assert validate(to_table(shapes), registry) == shapes
    with pytest.raises(RecipeError, match=r"train.augment: must be in \('flips', 'channels', "
                                          r"'data'\), got 'dat'"):
        load_recipe(vanilla, ["train.augment=['dat']"])


def test_a_recipe_error_pickles_whole(vanilla):
    """The benchmarks build recipes in child processes: their errors must come back as the
    same one-line problems, not as a broken process pool."""
    import pickle
    with pytest.raises(RecipeError) as caught:
        load_recipe(vanilla, ["tokens.max=1"])
    again = pickle.loads(pickle.dumps(caught.value))
    assert again.problems == caught.value.problems and str(again) == str(caught.value)
    assert "tokens.weights: needs one weight for each K from min to max (1), got 8" in str(again)


def test_empty_recipe_takes_every_default(tmp_path):
    recipe = validate({}, load_registry())
    assert recipe.model.memory.use == "convlstm" and recipe.data.use == "shapes"


def test_masked_combiner_without_masks_is_a_warning(vanilla, capsys):
    assert main(["check", str(vanilla), "--set", "model.combiner.use=masked_sum"]) == 0
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and "warning:" in captured.err
    assert "'masked_sum' without a saliency head" in captured.err


def test_check_shows_the_size_of_the_model(vanilla, capsys):
    assert main(["check", str(vanilla)]) == 0
    out = capsys.readouterr().out
    assert "parameters; a token is 64 floats;" in out and "MFLOP per image per token" in out
    assert "MB per training step (batch 32, K = 8)" in out


def test_size_counts_parameters_and_grows_with_width(vanilla):
    from vle_kit.build import build_model, measure_size

    recipe, registry = load_recipe(vanilla)
    size = measure_size(recipe, registry)
    assert size.parameters == sum(p.numel() for p in build_model(recipe, registry).parameters())
    wider, _ = load_recipe(vanilla, ["model.width=128"])
    assert measure_size(wider, registry).flops_per_image_token > 2 * size.flops_per_image_token


EXTENDED = """
[recipe]
name = "base"
plugins = ["my_loss.py"]
[model.memory]
use = "convlstm"
hidden = 16
[model.saliency]
use = "inherent"
min_area = 0.01
[[mask_loss]]
use = "mine"
weight = 2.0
[[mask_loss]]
use = "binarize"
[tokens]
min = 8
max = 8
[data]
use = "shapes"
size = 32
train = 64
[train]
steps = 10
batch = 8
"""

MY_LOSS = """
from vle_kit import hookimpl
from vle_kit_plugins.loss_binarize import BinarizeLoss

@hookimpl
def register_mask_losses(register):
    register("mine", BinarizeLoss)
"""


def test_a_recipe_extends_another_key_by_key(tmp_path):
    """`recipe.extends`: the base's tables with the recipe's keys; a slot whose plug-in
    changes and an array of tables are replaced whole; the name is the recipe's own, the
    base's plug-ins load from beside the base, and the resolved recipe stands alone."""
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "base.toml").write_text(EXTENDED)
    (tmp_path / "base" / "my_loss.py").write_text(MY_LOSS)
    (tmp_path / "longer.toml").write_text(
        '[recipe]\nextends = "base/base.toml"\n[model.saliency]\nmin_area = 0.05\n'
        '[model.memory]\nuse = "gru"\n[[mask_loss]]\nuse = "mine"\n[train]\nsteps = 30\n')
    recipe, registry = load_recipe(tmp_path / "longer.toml")
    assert recipe.recipe.name == "longer"
    assert (recipe.train.steps, recipe.train.batch, recipe.tokens.max) == (30, 8, 8)
    assert recipe.model.saliency.use == "inherent"
    assert recipe.model.saliency.config.min_area == 0.05
    assert recipe.model.memory.use == "gru"  # not convlstm's hidden = 16 on a GRU
    assert recipe.model.memory.config == registry.get("memory", "gru").factory.Config()
    assert [c.use for c in recipe.mask_loss] == ["mine"]
    assert "extends" not in to_table(recipe)["recipe"]
    assert validate(to_table(recipe), registry) == recipe  # what a run saves needs no base


@pytest.mark.parametrize("extends,expected", [
    ('"nope.toml"', "recipe.extends: 'nope.toml' is not a recipe file beside this one"),
    ("3", "recipe.extends: 3 is not a recipe file beside this one"),
    ('"a.toml"', "recipe.extends: 'a.toml' leads back to a.toml, in a circle"),
    ('"b.toml"', "recipe.extends: 'a.toml' leads back to b.toml, in a circle")])
def test_a_bad_extends_gets_one_clear_line(tmp_path, capsys, extends, expected):
    (tmp_path / "b.toml").write_text('[recipe]\nextends = "a.toml"\n')
    path = tmp_path / "a.toml"
    path.write_text(f"[recipe]\nextends = {extends}\n")
    assert main(["check", str(path)]) == 2
    (line,) = [line for line in capsys.readouterr().err.splitlines()
               if not line.startswith("error:")]
    assert line.endswith(expected)
