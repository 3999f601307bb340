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


# ---------------------------------------------------------------------------------- all flagged examples
LONG_ID = "photos/" + "averyveryverylongfolder" * 6 + "/IMG_00000001.jpeg"  # 163 characters, no space


def _many_issues(n=200, classes=4, flipped=40):
    """Images with distinct scores (no ties: every sort order is unique) and two long ids."""
    rng = np.random.default_rng(3)
    data = tiny_images(n=n, classes=classes, seed=2)
    true = data.labels.copy()
    given = true.copy()
    given[:flipped] = (true[:flipped] + 1) % classes
    p = rng.dirichlet(np.full(classes, 0.3), size=n) * 0.3
    p[np.arange(n), true] += 0.7
    ids = [f"img/{i:03d}.png" for i in range(n)]
    ids[0], ids[1] = LONG_ID, LONG_ID + "2"
    issues = audit_label_issues(given, p, class_names=[f"k{i}" for i in range(classes)], true_labels=true, ids=ids)
    assert len(set(issues.scores[issues.is_issue])) == issues.num_issues  # distinct
    return issues, data.x


def test_flagged_table_lists_every_flagged_example_with_exact_values():
    issues, images = _many_issues()
    page = render_report(issues, inputs=images, top=10)
    table = page[page.index("<table id='flagged-table'"):]
    table = table[:table.index("</table>")]
    rows = re.findall(r"<tr data-given='(\d+)' data-sugg='(\d+)'>(.*?)</tr>", table)
    records = issues.records()
    assert issues.num_issues > 10 and len(rows) == issues.num_issues == len(records)
    for (given, sugg, cells), r in zip(rows, records):
        assert (int(given), int(sugg)) == (r["given"], r["suggested"])
        assert f"<td class='l id'>{r['id']}</td>" in cells
        assert f"<td data-v='{r['score']!r}'>" in cells  # exact value for sorting, rounded text for reading
        assert f"<td data-v='{r['suggested_confidence']!r}'>" in cells
    # the suggestion's confidence is the detector's probability of it
    pos = issues.issue_positions()[0]
    assert records[0]["suggested_confidence"] == pytest.approx(
        float(issues.suggested_confidence[pos]))
    assert "All %d flagged examples" % issues.num_issues in page
    assert page.count("<option value='3'>k3</option>") == 3  # class, given and suggested filters


HARNESS = """<script>
window.addEventListener('load', function () {
  var t = document.getElementById('flagged-table'), out = {};
  function shown(what) {
    return Array.prototype.filter.call(t.tBodies[0].rows, function (r) { return !r.hidden; }).map(what);
  }
  function ids() { return shown(function (r) { return r.querySelector('td.id').textContent; }); }
  function head(name) {
    var cells = t.tHead.rows[0].cells;
    for (var i = 0; i < cells.length; i++) if (cells[i].textContent === name) return cells[i];
  }
  function set(id, value, type) {
    var el = document.getElementById(id); el.value = value; el.dispatchEvent(new Event(type));
  }
  out.listed = ids();
  head('id').querySelector('button').click();  // leave the initial (score) order first
  out.byId = ids();
  head('score').querySelector('button').click();
  out.ascending = ids(); out.ariaAscending = head('score').getAttribute('aria-sort');
  head('score').querySelector('button').click();
  out.descending = ids(); out.ariaDescending = head('score').getAttribute('aria-sort');
  set('flagged-given', '1', 'change');
  out.given1 = ids(); out.count = document.getElementById('flagged-count').textContent;
  set('flagged-given', '', 'change'); set('flagged-class', '2', 'change');
  out.class2 = ids();
  set('flagged-class', '', 'change'); set('flagged-text', 'VERYlong', 'input');
  out.text = ids();
  var wide = function (el) { return el.scrollWidth > el.clientWidth + 1; };
  out.overflowingCards = Array.prototype.filter.call(document.querySelectorAll('figure.suspect'), wide).length;
  out.galleryOverflows = wide(document.getElementById('gallery'));
  out.overflowingIdCells = Array.prototype.filter.call(t.querySelectorAll('td.id'), wide).length;
  var pre = document.createElement('pre'); pre.id = 'harness'; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


@needs_chromium
def test_flagged_table_in_chromium_lists_sorts_and_filters(tmp_path):
    import html as html_lib
    import json

    issues, images = _many_issues()
    page = render_report(issues, inputs=images, top=10)
    # the report's own script runs unchanged; the harness, added after it, clicks and records
    path = tmp_path / "report.html"
    path.write_text(page.replace("</body>", HARNESS + "</body>"), encoding="utf-8")
    out = _chromium(tmp_path, path.as_uri(), "--dump-dom", "--window-size=1000,2000")
    assert out.returncode == 0, out.stderr[-2000:]
    assert _console_messages(out.stderr) == []
    got = json.loads(html_lib.unescape(re.search(r"<pre id=\"harness\">(.*?)</pre>", out.stdout, re.S).group(1)))
    records = issues.records()
    by_score = [r["id"] for r in sorted(records, key=lambda r: r["score"])]
    assert got["listed"] == [r["id"] for r in records] and len(got["listed"]) == issues.num_issues
    assert got["byId"] == sorted(got["listed"], key=str.lower) != got["listed"]
    assert got["ascending"] == by_score and got["ariaAscending"] == "ascending"
    assert got["descending"] == by_score[::-1] and got["ariaDescending"] == "descending"
    given1 = [r["id"] for r in sorted(records, key=lambda r: -r["score"]) if r["given"] == 1]
    assert got["given1"] == given1 and got["count"] == f"{len(given1)} of {issues.num_issues} shown"
    assert 0 < len(given1) < issues.num_issues
    assert sorted(got["class2"]) == sorted(r["id"] for r in records if 2 in (r["given"], r["suggested"]))
    assert sorted(got["text"]) == sorted([LONG_ID, LONG_ID + "2"])
    # long ids wrap inside their cards and cells instead of widening them
    assert got["overflowingCards"] == 0 and not got["galleryOverflows"] and got["overflowingIdCells"] == 0


# ---------------------------------------------------------------------------------- feature rows as images
def _digit_like(n=30, side=8, seed=0):
    """Non-negative rows of side*side values (0..16, as scikit-learn's digits); row 0 is a diagonal of 16s."""
    x = np.random.default_rng(seed).integers(0, 17, (n, side * side)).astype(np.float64)
    x[0] = np.eye(side).ravel() * 16
    given = np.zeros(n, dtype=int)
    given[n // 2:] = 1
    p = np.full((n, 2), 0.05)
    p[np.arange(n), given] = 0.95
    p[0] = [0.02, 0.98]  # row 0 (labelled 0) is the clearest suspect
    return x, audit_label_issues(given, p, class_names=["a", "b"])


def test_feature_rows_that_are_images_become_thumbnails():
    from PIL import Image

    from noisyfit.report.feature_images import feature_images

    x, issues = _digit_like()
    assert issues.records(1)[0]["index"] == 0
    page = render_report(issues, inputs=x, top=5)
    assert page.count("class='thumb'") == issues.num_issues == 1 and "<table id='suspect-rows'>" not in page
    assert "Rows drawn as 8x8 grey images: 64 features is a square number" in page
    assert "Values 0 to 16 (the data set&#x27;s range) are drawn white to black." in page
    thumb = re.search(r"class='thumb' alt='[^']*' src='data:image/png;base64,([^']+)'", page).group(1)
    with Image.open(__import__("io").BytesIO(base64.b64decode(thumb))) as im:
        px = np.asarray(im.convert("L"))
    # 96 px for 8 cells: 12 px a cell; the diagonal (16) is black, the rest (0) white
    assert px.shape == (96, 96) and px[6, 6] == 0 and px[6, 18] == 255 and px[90, 90] == 0
    # a value between: 8 of 0..16 is mid grey (255 - round(127.5) = 127)
    assert feature_images(np.array([[0.0] * 63 + [16.0], [8.0] * 64]))[1][0, 0] == 127


def test_feature_rows_that_are_not_images_stay_a_table():
    from noisyfit.report.feature_images import FeatureImageError, feature_images

    x, issues = _digit_like()
    for inputs, setting in ((x - 8.0, "auto"), (x, "off"), (x[:, :60], "auto"), (x[:, :49], "auto")):
        # negative values, switched off, 60 not a square, 49 = 7x7 below the least side 8
        page = render_report(issues, inputs=inputs, top=5, feature_image=setting)
        assert "<table id='suspect-rows'>" in page and "class='thumb'" not in page, (inputs.shape, setting)
    page = render_report(issues, inputs=x[:, :16], top=5, feature_image="4x4")
    assert page.count("class='thumb'") == 1 and "Rows drawn as 4x4 images (feature image setting 4x4)." in page
    with pytest.raises(FeatureImageError, match=r"--feature-image 3x3: 3x3 = 9 values, but the rows have 64 features"):
        feature_images(x, "3x3")
    with pytest.raises(FeatureImageError, match=r"use auto, off, HxW"):
        feature_images(x, "8by8")
