"""Plug-ins: outside ones register through the same hooks, with no change to the core."""

import subprocess
import sys

import pytest
import torch
from conftest import train_tiny

from vle_kit import checkpoint, hookimpl
from vle_kit.cli import main
from vle_kit.errors import PluginError, RecipeError
from vle_kit.interfaces import Composer, Decoder
from vle_kit.plugins import load_registry
from vle_kit.recipe import load_recipe, validate
from vle_kit.results import Evaluation
from vle_kit.runs import RunDir


class DoubledResidual(Composer):
    """A throwaway input mode: the residual, twice as loud."""

    def forward(self, x, state):
        return 2 * (x - state.recon)


class ThrowawayPlugin:
    @staticmethod
    @hookimpl
    def register_composers(register):
        register("doubled", DoubledResidual)


def test_throwaway_composer_trains_through_a_recipe(tmp_path):
    run = RunDir(train_tiny("vanilla", tmp_path, ["train.steps=2", "model.composer.use=doubled"],
                            [ThrowawayPlugin()]))
    assert len(Evaluation.read(run.eval_json).vle.mse) == 3
    assert run.checkpoint.is_file()


class AveragingDecoder(Decoder):
    """A throwaway decoder: one linear layer per pixel block, plus the mean of what is drawn."""

    def __init__(self, cfg, spec):
        super().__init__(cfg, spec)
        self.up = torch.nn.ConvTranspose2d(spec.token_channels, spec.image_channels,
                                           spec.image_size // spec.token_size,
                                           spec.image_size // spec.token_size)

    def forward(self, z, state, memory):
        return self.up(z) + state.recon.mean(dim=(2, 3), keepdim=True), None


def test_throwaway_decoder_trains_through_a_recipe(tmp_path):
    class DecoderPlugin:
        @staticmethod
        @hookimpl
        def register_decoders(register):
            register("averaging", AveragingDecoder)

    run = RunDir(train_tiny("vanilla", tmp_path,
                            ["train.steps=2", "model.decoder={use='averaging'}"],
                            [DecoderPlugin()]))
    assert len(Evaluation.read(run.eval_json).vle.mse) == 3
    state = checkpoint.load(run.checkpoint)
    assert state["step"] == 2 and "decoder.up.weight" in state["model"]


def test_duplicate_name_names_both_plugins():
    class Again:
        @staticmethod
        @hookimpl
        def register_composers(register):
            register("residual", DoubledResidual)

    with pytest.raises(PluginError, match="composer 'residual' is registered twice: by "
                                          "vle_kit_plugins.composer_residual and by Again"):
        load_registry([Again()])


MODULE = '''
from vle_kit import checkpoint, hookimpl
from vle_kit.interfaces import Composer


class SignComposer(Composer):
    def forward(self, x, state):
        return (x - state.recon).sign()


@hookimpl
def register_composers(register):
    register("sign", SignComposer)
'''


def test_a_data_set_naming_an_unknown_augmentation_is_a_recipe_error(vanilla):
    """`train.augment = ["data"]` is resolved on reading the recipe, so a data set plug-in
    whose own augmentations name one that does not exist fails `check`, not a training step."""
    shapes = load_registry().get("dataset", "shapes").factory

    class Turned(shapes):
        augment = ("flips", "rotations")

    class TurnedPlugin:
        @staticmethod
        @hookimpl
        def register_datasets(register):
            register("turned", Turned)

    registry = load_registry([TurnedPlugin()])
    table = {"data": {"use": "turned"}, "train": {"augment": ["data"]}}
    with pytest.raises(RecipeError, match="train.augment: \"data\" stands for data set "
                                          "'turned''s augment, which names 'rotations'"):
        validate(table, registry)
    assert validate({**table, "train": {"augment": ["flips"]}}, registry).train.augment == (
        "flips",)


def test_user_module_from_the_command_line(vanilla, tmp_path, capsys, monkeypatch):
    (tmp_path / "my_mode.py").write_text(MODULE)
    monkeypatch.chdir(tmp_path)
    assert main(["check", str(vanilla), "-p", "my_mode", "--set", "model.composer.use=sign"]) == 0
    assert main(["plugins", "-p", "my_mode.py"]) == 0
    assert "composer: sign" in capsys.readouterr().out


def test_user_module_named_in_the_recipe(vanilla, tmp_path):
    (tmp_path / "sign_mode.py").write_text(MODULE)
    recipe_path = tmp_path / "r.toml"
    recipe_path.write_text('[recipe]\nplugins = ["sign_mode.py"]\n'
                           '[model.composer]\nuse = "sign"\n')
    recipe, registry = load_recipe(recipe_path)
    assert registry.get("composer", "sign").plugin == "sign_mode"


def test_unloadable_module_is_one_line(tmp_path):
    (tmp_path / "broken.py").write_text("import does_not_exist\n")
    recipe_path = tmp_path / "r.toml"
    recipe_path.write_text('[recipe]\nplugins = ["broken.py", "nowhere_at_all"]\n')
    with pytest.raises(RecipeError) as caught:
        load_recipe(recipe_path)
    assert caught.value.problems == [
        "recipe.plugins[0]: cannot load plug-in 'broken.py': ModuleNotFoundError: "
        "No module named 'does_not_exist'",
        "recipe.plugins[1]: cannot load plug-in 'nowhere_at_all': ModuleNotFoundError: "
        "No module named 'nowhere_at_all'"]


def test_misspelled_hook_is_refused():
    class Typo:
        @staticmethod
        @hookimpl
        def register_composer(register):
            pass

    with pytest.raises(PluginError, match="unknown hook 'register_composer'"):
        load_registry([Typo()])


def test_packaged_plugin_found_through_its_entry_point(tmp_path):
    """A distribution on sys.path declaring `[project.entry-points.vle_kit]` is loaded."""
    (tmp_path / "vle_kit_sign.py").write_text(MODULE)
    info = tmp_path / "vle_kit_sign-0.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: vle-kit-sign\nVersion: 0.3\n")
    (info / "entry_points.txt").write_text("[vle_kit]\nsign = vle_kit_sign\n")
    env = {k: v for k, v in __import__("os").environ.items()
           if k != "VLE_KIT_DISABLE_PLUGIN_AUTOLOAD"}
    env["PYTHONPATH"] = str(tmp_path)
    out = subprocess.run([sys.executable, "-m", "vle_kit", "plugins"], env=env, check=True,
                         capture_output=True, text=True).stdout
    assert "sign 0.3\n    composer: sign" in out
    assert "vle_kit_plugins.composer_residual 0.1.0\n    composer: residual" in out


def test_plugins_lists_every_slot(capsys):
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    for expected in ("memory: convlstm", "memory: gru", "memory: none", "combiner: sum",
                     "dataset: shapes", "dataset: image_folder", "composer: raw_mask"):
        assert expected in out



def test_resolved_recipe_remembers_command_line_plugins(vanilla, tmp_path, monkeypatch):
    from vle_kit.recipe import dump_recipe

    (tmp_path / "sign_mode.py").write_text(MODULE)
    monkeypatch.chdir(tmp_path)
    recipe, _ = load_recipe(vanilla, ["model.composer.use=sign"], plugins=["sign_mode.py"])
    saved = tmp_path / "run" / "recipe.toml"
    saved.parent.mkdir()
    saved.write_text(dump_recipe(recipe))
    monkeypatch.chdir(vanilla.parent)
    again, _ = load_recipe(saved)
    assert again.model.composer.use == "sign"
    assert again.recipe.plugins == (str(tmp_path / "sign_mode.py"),)
