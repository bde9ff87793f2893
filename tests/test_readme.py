"""The README's plug-in walk-through works as written."""

import re
import subprocess
import sys

from conftest import ROOT

from vle_kit.cli import main
from vle_kit.recipe import load_recipe, to_table


def python_blocks(heading: str) -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text[text.index(heading):]
    section = section[:section.index("\n## ")]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def readme_plugin() -> str:
    return python_blocks("### 1. Try a new input mode")[0]


def test_readme_test_file_passes(tmp_path):
    """The walk-through's plug-ins and their test file, written out and run by pytest."""
    loss, test_file = python_blocks("### 3. Test it")
    (tmp_path / "gated.py").write_text(readme_plugin())
    (tmp_path / "overlap.py").write_text(loss)
    (tmp_path / "test_overlap.py").write_text(test_file)
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "test_overlap.py"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout


def test_readme_plugin_checks_and_validates_its_options(tmp_path, monkeypatch, capsys):
    (tmp_path / "gated.py").write_text(readme_plugin())
    monkeypatch.chdir(tmp_path)
    recipe = str(ROOT / "recipes" / "vanilla.toml")
    assert main(["check", recipe, "-p", "gated.py", "--set", "model.composer.use=gated_residual",
                 "--set", "model.composer.sharpness=2"]) == 0
    assert main(["check", recipe, "-p", "gated.py", "--set", "model.composer.use=gated_residual",
                 "--set", "model.composer.sharpness=-1"]) == 2
    assert "model.composer.sharpness: must be > 0, got -1" in capsys.readouterr().err


def test_readme_recipe_that_extends_vanilla_checks(tmp_path, capsys):
    """The walk-through's own recipe, beside its plug-in and a copy of recipes/, is valid and
    is vanilla.toml with the new composer."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("or in a recipe of your own"):]
    recipe = re.search(r"```toml\n(.*?)```", section, flags=re.S).group(1)
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "vanilla.toml").write_text(
        (ROOT / "recipes" / "vanilla.toml").read_text())
    (tmp_path / "gated.py").write_text(readme_plugin())
    (tmp_path / "gated.toml").write_text(recipe)
    assert main(["check", str(tmp_path / "gated.toml")]) == 0
    assert "gated: composer gated_residual" in capsys.readouterr().out
    mine, _ = load_recipe(tmp_path / "gated.toml")
    theirs, _ = load_recipe(tmp_path / "recipes" / "vanilla.toml", [
        "model.composer={use='gated_residual', sharpness=2.0}"], [str(tmp_path / "gated.py")])
    assert {**to_table(mine), "recipe": None} == {**to_table(theirs), "recipe": None}
