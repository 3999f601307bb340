"""The HTML report: self-contained, the expected sections and suspects, and it renders in headless Chromium."""

import base64
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_images

from noisyfit.detect import audit_label_issues
from noisyfit.report import render_report, write_report

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--enable-logging=stderr",
                  "--v=0", "--virtual-time-budget=5000"]
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (make test installs "
                                                             "Debian's chromium when run as root)")


def _image_issues(n=96, classes=4, flipped=12):
    data = tiny_images(n=n, classes=classes, seed=1)
    true = data.labels.copy()
    given = true.copy()
    given[:flipped] = (true[:flipped] + 1) % classes
    p = np.full((n, classes), 0.1 / (classes - 1))
    p[np.arange(n), true] = 0.9
    issues = audit_label_issues(given, p, class_names=data.class_names, true_labels=true,
                                ids=[f"img/{i:03d}.png" for i in range(n)])
    return issues, data.x


def _tabular_issues(n=60, d=12):
    rng = np.random.default_rng(0)
    true = rng.integers(0, 3, n)
    given = true.copy()
    given[:6] = (true[:6] + 2) % 3
    p = np.full((n, 3), 0.05)
    p[np.arange(n), true] = 0.9
    return audit_label_issues(given, p, class_names=["x", "y", "z"]), rng.normal(size=(n, d)).astype(np.float32)


def test_report_is_self_contained_with_every_section():
    issues, images = _image_issues()
    assert issues.num_issues == 12
    page = render_report(issues, inputs=images, title="t", top=10)
    for section in ("summary", "noise", "classes", "scores", "suspects"):
        assert f"<section id='{section}'>" in page
    # nothing is fetched: no http(s) URL in any src/href, CSS inline
    assert not re.search(r"(src|href)=['\"]https?:", page)
    assert "<link rel='stylesheet'" not in page and "<style>" in page
    # 4 figures (2 heatmaps as true labels are known, class bars, score histogram) + 10 thumbnails, all PNG
    uris = re.findall(r"src='data:image/png;base64,([^']+)'", page)
    assert len(uris) == 4 + 10
    assert all(base64.b64decode(u)[:8] == b"\x89PNG\r\n\x1a\n" for u in uris)
    assert page.count("class='thumb'") == 10
    assert "data-expected='10'" in page
    # the most suspicious card first, with its given and suggested labels and the reason
    first = issues.records(1)[0]
    card = page[page.index("<figure class='suspect'"):]
    card = card[:card.index("</figure>")]
    assert f"<span class='given'>{first['given_label']}</span> &rarr; <span class='sugg'>" \
           f"{first['suggested_label']}</span>" in card
    assert f"#{first['index']} {first['id']}" in card and "prune_by_noise_rate: p(" in card


def test_tabular_report_lists_rows_with_features():
    issues, x = _tabular_issues()
    page = render_report(issues, inputs=x, feature_names=[f"f{j}" for j in range(12)], top=5)
    table = page[page.index("<table id='suspect-rows'>"):]
    table = table[:table.index("</table>")]
    assert table.count("<tr>") == 1 + 5
    assert "<th>f7</th>" in table and "<th>f8</th>" not in table  # the first 8 features
    assert "first 8 of 12 features" in page
    assert "class='thumb'" not in page


def _chromium(tmp_path: Path, url: str, *extra: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    return subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *extra, url],
                          capture_output=True, text=True, timeout=120, check=False)


def _console_messages(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


@needs_chromium
def test_console_error_check_catches_a_broken_page(tmp_path):
    # the detector used below must be able to fail: a page with a script error and an undecodable image
    bad = tmp_path / "bad.html"
    bad.write_text("<!DOCTYPE html><html><body><div id='gallery'><img class='thumb' src='data:image/png;base64,AAAA'>"
                   "</div><script>window.addEventListener('load', function () {"
                   "var g = document.getElementById('gallery'); var i = g.querySelector('img');"
                   "g.setAttribute('data-rendered', String(i.naturalWidth > 0 ? 1 : 0));});"
                   "throw new Error('boom');</script></body></html>")
    out = _chromium(tmp_path, bad.as_uri(), "--dump-dom")
    assert any("Uncaught Error: boom" in m for m in _console_messages(out.stderr))
    assert "data-rendered=\"0\"" in out.stdout


@needs_chromium
def test_report_renders_in_chromium_without_console_errors(tmp_path):
    issues, images = _image_issues()
    page = write_report(tmp_path / "report.html", issues, inputs=images, title="Label audit: tiny images", top=10)
    out = _chromium(tmp_path, page.as_uri(), "--dump-dom")
    assert out.returncode == 0, out.stderr[-2000:]
    assert _console_messages(out.stderr) == []
    # every thumbnail decoded in the browser (counted by the page's script after load)
    assert re.search(r"id=\"gallery\" data-expected=\"10\" data-rendered=\"10\"", out.stdout), out.stdout[:500]
    assert out.stdout.count("class=\"suspect\"") == 10
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report.png"
    shot.unlink(missing_ok=True)
    out = _chromium(tmp_path, page.as_uri(), f"--screenshot={shot}", "--window-size=1280,3600")
    assert out.returncode == 0 and shot.is_file()
    from PIL import Image

    with Image.open(shot) as im:
        assert im.size == (1280, 3600)
        # not a blank page: the header band is dark, the body light
        assert np.asarray(im.convert("L"))[20, 20] < 100 and np.asarray(im.convert("L")).mean() > 150
