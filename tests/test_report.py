"""report.html as a person sees it: rendered by a real browser (headless Chromium), every image
loaded, nothing logged; the verdict and the run's making at the top."""

import html
import json
import re
import shutil
import subprocess

import pytest
from conftest import train_tiny

from vle_kit.report import verdict
from vle_kit.results import Evaluation

BROWSER = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome")
                if shutil.which(b)), None)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files",
         "--enable-logging=stderr", "--log-level=0"]

# Loads the report in a frame, then writes what it found where --dump-dom prints it.
PROBE = """<!doctype html><html><body><iframe id="r" src="{src}" width="1280" height="4000">
</iframe><pre id="result">not loaded</pre><script>
document.getElementById('r').addEventListener('load', function () {{
  var images = Array.from(this.contentDocument.images);
  var broken = images.filter(function (i) {{ return !(i.complete && i.naturalWidth > 0); }});
  document.getElementById('result').textContent = JSON.stringify({{
    images: images.length, widths: images.map(function (i) {{ return i.naturalWidth; }}),
    broken: broken.map(function (i) {{ return i.alt; }}), title: this.contentDocument.title}});
}});
</script></body></html>"""


@pytest.fixture(scope="module")
def mask_run(tmp_path_factory):
    """A tiny inherent-mask run: its report has every section and figure a run can have."""
    return train_tiny("inherent", tmp_path_factory.mktemp("runs"))


def test_report_opens_with_a_verdict_and_says_how_the_run_was_made(mask_run):
    page = (mask_run / "report.html").read_text()
    result = Evaluation.read(mask_run / "eval.json")
    assert f"<p class='verdict'>{html.escape(verdict(result))}</p>" in page
    assert "FG-ARI" in verdict(result) and "PCA" in verdict(result)
    for needle in ("steps/s", "threads", "torch", "made by", "training loss"):
        assert needle in page, needle


def test_verdict_names_where_the_vle_beats_pca():
    from test_evaluation import fake_result

    result = fake_result(16, "x")  # VLE 0.04, 0.03 against PCA 0.05, 0.04
    assert verdict(result).startswith("below PCA at every k = 1..2 (0.75x PCA at k = 2)")


@pytest.mark.skipif(BROWSER is None, reason="no Chromium here: .ci/run installs Debian's "
                                            "chromium with apt; without it this test cannot run")
def test_report_renders_in_a_real_browser_with_every_image_loaded(mask_run, tmp_path):
    report = mask_run / "report.html"
    probe = tmp_path / "probe.html"
    probe.write_text(PROBE.format(src=report.as_uri()))
    done = subprocess.run([BROWSER, *FLAGS, "--dump-dom", probe.as_uri()], capture_output=True,
                          text=True, timeout=120)
    found = json.loads(re.search(r'<pre id="result">(.*?)</pre>', done.stdout, re.S)[1])
    assert found["broken"] == [] and found["images"] >= 5, found
    assert min(found["widths"]) >= 96, "grids and plots are large enough to read unzoomed"
    logged = [line for line in done.stderr.splitlines() if "CONSOLE" in line]
    assert logged == [], logged
    shot = tmp_path / "report.png"
    subprocess.run([BROWSER, *FLAGS, f"--screenshot={shot}", "--window-size=1280,2400",
                    report.as_uri()], capture_output=True, timeout=120)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
