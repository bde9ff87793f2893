"""The README's plug-in walk-through works as written."""

import re

from vle_kit.cli import main

from conftest import ROOT


def readme_plugin() -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("### 1. Try a new input mode"):]
    return re.search(r"```python\n(.*?)```", section, flags=re.S)[1]


def test_readme_plugin_checks_and_validates_its_options(tmp_path, monkeypatch, capsys):
    (tmp_path / "gated.py").write_text(readme_plugin())
    monkeypatch.chdir(tmp_path)
    recipe = str(ROOT / "recipes" / "vanilla.toml")
    assert main(["check", recipe, "-p", "gated.py", "--set", "model.composer.use=gated_residual",
                 "--set", "model.composer.sharpness=2"]) == 0
    assert main(["check", recipe, "-p", "gated.py", "--set", "model.composer.use=gated_residual",
                 "--set", "model.composer.sharpness=-1"]) == 2
    assert "model.composer.sharpness: must be > 0, got -1" in capsys.readouterr().err
