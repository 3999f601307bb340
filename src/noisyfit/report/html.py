"""The audit report: one self-contained HTML file (inline CSS, figures and thumbnails as base64 PNG).

It opens from disk with no network: estimated noise and the transition matrix as a heatmap, per-class
issue counts, the score distribution with the threshold the detector used, and the top suspects as a
gallery of thumbnails with given vs suggested label (images, and feature rows that are images: see
``feature_images.py``) or as table rows (other tabular data); then every flagged example in a table
that sorts and filters in the page (``flagged_table.py``). A few lines of script count the thumbnails
that decoded (``data-rendered`` on the gallery), so a browser test can tell that the images render.
"""

from __future__ import annotations

import html
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from noisyfit.detect.issues import LabelIssues
from noisyfit.report import flagged_table, plots
from noisyfit.report.feature_images import feature_images

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#222;background:#fafafa}
header{background:#1f3b57;color:#fff;padding:18px 28px}header h1{margin:0 0 4px;font-size:22px}
header p{margin:2px 0;font-size:13px;opacity:.9}main{padding:8px 28px 40px;max-width:1280px}
section{background:#fff;border:1px solid #e3e3e3;border-radius:6px;padding:14px 18px;margin:16px 0}
#cautions{background:#fff6e0;border-color:#e0b050}#cautions li{margin:4px 0}
h2{font-size:17px;margin:0 0 10px}.tiles{display:flex;flex-wrap:wrap;gap:10px}
.tile{border:1px solid #ddd;border-radius:6px;padding:8px 12px;min-width:120px;background:#fcfcfc}
.tile b{display:block;font-size:20px}.tile span{font-size:12px;color:#555}
table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ddd;padding:3px 7px;text-align:right}
th{background:#f0f0f0}td.l,th.l{text-align:left}.figs{display:flex;flex-wrap:wrap;gap:18px;align-items:flex-start}
.figs img{max-width:100%}.note{font-size:12px;color:#555}
.gallery{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:10px}
.suspect{margin:0;border:1px solid #ddd;border-radius:6px;padding:6px;background:#fff;font-size:11px}
.suspect img{display:block;margin:0 auto 4px;image-rendering:pixelated;width:96px;height:96px;object-fit:contain}
.suspect .lab{font-size:12px}.given{color:#c0392b;font-weight:600}.sugg{color:#1e8449;font-weight:600}
.reason{color:#555;display:-webkit-box;-webkit-line-clamp:4;-webkit-box-orient:vertical;overflow:hidden}
.suspect{min-width:0}.suspect figcaption div,td.id{overflow-wrap:anywhere}
.neighbours{display:flex;flex-wrap:wrap;gap:2px;margin-top:4px}.neighbours figure{margin:0;width:38px;font-size:9px;
text-align:center;overflow:hidden;white-space:nowrap}.suspect .neighbours img{width:36px;height:36px;margin:0 auto}
"""

_SCRIPT = """
window.addEventListener('load', function () {
  var g = document.getElementById('gallery');
  if (!g) return;
  var imgs = g.querySelectorAll('img.thumb'), ok = 0;
  for (var i = 0; i < imgs.length; i++) { if (imgs[i].complete && imgs[i].naturalWidth > 0) ok++; }
  g.setAttribute('data-rendered', String(ok));
});
"""


def _e(v) -> str:
    return html.escape(str(v), quote=True)


def _pct(v) -> str:
    return "–" if v is None else f"{100 * v:.1f}%"


def _num(v, digits: int = 3) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def _tiles(issues: LabelIssues, det: dict | None) -> str:
    items = [(f"{len(issues):,}", "examples audited"),
             (f"{issues.num_issues:,}", f"flagged ({_pct(issues.num_issues / max(len(issues), 1))})"),
             (_pct(issues.estimated_noise_rate), "estimated noise rate")]
    if det:
        items += [(_pct(det.get("true_noise_rate")), "true noise rate"), (_num(det.get("precision")), "precision"),
                  (_num(det.get("recall")), "recall"), (_num(det.get("f1")), "F1"), (_num(det.get("auroc")), "AUROC")]
        if det.get("suggestion_accuracy") is not None:
            items.append((_pct(det["suggestion_accuracy"]), "suggested = true label (flagged wrong ones)"))
    return "<div class='tiles'>" + "".join(f"<div class='tile'><b>{_e(a)}</b><span>{_e(b)}</span></div>"
                                          for a, b in items) + "</div>"


def _img(png: bytes, alt: str, cls: str = "fig") -> str:
    return f"<img class='{cls}' alt='{_e(alt)}' src='{plots.data_uri(png)}'>"


def _noise_section(issues: LabelIssues) -> str:
    if issues.noise is None:
        return ""
    figs = [_img(plots.transition_heatmap(issues.noise.transition, issues.class_names,
                                          "estimated P(given | true)"), "estimated transition matrix")]
    if issues.true_labels is not None:
        c = issues.num_classes
        counts = np.bincount(issues.true_labels * c + issues.given, minlength=c * c).reshape(c, c).astype(float)
        real = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1.0)
        figs.append(_img(plots.transition_heatmap(real, issues.class_names, "true P(given | true)"),
                         "true transition matrix"))
    return (f"<section id='noise'><h2>Noise: estimated rate {_pct(issues.noise.noise_rate)}</h2>"
            f"<p class='note'>Estimated by {_e(issues.noise.method)}. Rows: true label; columns: given label; "
            f"the off-diagonal mass of a row is the share of that class carrying another label.</p>"
            f"<div class='figs'>{''.join(figs)}</div></section>")


def _class_section(issues: LabelIssues) -> str:
    rows = issues.per_class()
    bar = plots.class_counts_bar(issues.class_names, [r["examples"] for r in rows], [r["issues"] for r in rows])
    body = "".join(f"<tr><td class='l'>{_e(r['name'])}</td><td>{r['examples']}</td><td>{r['issues']}</td>"
                   f"<td>{_pct(r['issue_rate'])}</td><td>{r['suggested_into']}</td></tr>" for r in rows)
    table = ("<table><tr><th class='l'>class</th><th>examples</th><th>flagged</th><th>flagged share</th>"
             f"<th>suggested into</th></tr>{body}</table>")
    return (f"<section id='classes'><h2>Issues per class</h2><div class='figs'>{_img(bar, 'issues per class')}"
            f"{table}</div></section>")


def _score_section(issues: LabelIssues) -> str:
    wrong = issues.given != issues.true_labels if issues.true_labels is not None else None
    fig = plots.score_histogram(issues.scores, issues.is_issue, threshold=issues.threshold,
                                score_name=issues.score_name, truly_wrong=wrong)
    if issues.threshold is not None:
        text = f"Flagged: {_e(issues.score_name)} below the threshold {issues.threshold:.4g}."
    else:
        text = f"No single threshold on this score: the rule is “{_e(issues.rule)}”."
    thresholds = issues.info.get("thresholds")
    if thresholds:
        text += " Per-class confident thresholds t(j): " + ", ".join(f"{_e(k)} {v:.3f}" for k, v in thresholds.items())
    return (f"<section id='scores'><h2>Score distribution</h2><p class='note'>{text}</p>"
            f"{_img(fig, 'score distribution')}</section>")


def _annotator_section(issues: LabelIssues) -> str:
    ann = issues.info.get("annotators")
    if not ann:
        return ""
    body = "".join(f"<tr><td class='l'>{_e(a['annotator'])}</td><td>{a['num_labelled']}</td>"
                   f"<td>{_pct(a['agreement_with_consensus'])}</td><td>{_pct(a['estimated_accuracy'])}</td>"
                   f"<td>{_pct(a['true_accuracy'])}</td></tr>" for a in ann)
    acc = issues.info.get("consensus_accuracy") or {}
    acc_text = "; ".join(f"{_e(k)}: {_pct(v)}" for k, v in acc.items())
    return ("<section id='annotators'><h2>Annotators</h2><table><tr><th class='l'>annotator</th><th>labelled</th>"
            "<th>agrees with consensus</th><th>estimated accuracy</th><th>true accuracy</th></tr>"
            f"{body}</table>" + (f"<p class='note'>Consensus accuracy against the true labels: {acc_text}</p>"
                                 if acc_text else "") + "</section>")


def _review_section(issues: LabelIssues, limit: int = 200) -> str:
    """Examples not flagged but worth a look (an annotator audit's contested items), lowest score first."""
    if issues.review is None:
        return ""
    n = int(issues.review.sum())
    rows = "".join(f"<tr><td>{r['index']}</td><td class='l id'>{_e(r['id'])}</td><td class='l'>{_e(r['given_label'])}"
                   f"</td><td class='l'>{_e(r['suggested_label'])}</td><td>{r['score']:.3f}</td>"
                   f"<td class='l'>{_e(r['reason'])}</td></tr>" for r in issues.records(limit, which="review"))
    more = f" The first {limit} are shown; review.csv lists all {n:,}." if n > limit else ""
    table = ("<table id='review-table'><tr><th>index</th><th class='l'>id</th><th class='l'>kept label</th>"
             f"<th class='l'>best alternative</th><th>score</th><th class='l'>votes</th></tr>{rows}</table>") if n else ""
    what = ("The annotators split on these items, so their kept labels are worth a second look; lowest score "
            f"first.{more}" if n else "No item is contested.")
    return (f"<section id='review'><h2>To review: {n:,} contested item(s)</h2><p class='note'>Not flagged, but "
            f"{_e(issues.review_rule)}. {what}</p>{table}</section>")


def _neighbour_strip(images, near: Sequence[tuple[int, str]], shown: int = 6) -> str:
    """Small thumbnails of a suspect's nearest neighbours with their given labels: what the vote looked at."""
    cells = "".join(f"<figure class='nb'>{_img(plots.thumbnail_png(images[j], size=40), f'neighbour {j}', 'nbthumb')}"
                    f"<figcaption>{_e(label)}</figcaption></figure>" for j, label in list(near)[:shown])
    return f"<div class='neighbours' title='nearest neighbours in the embedding, nearest first'>{cells}</div>"


def _gallery(issues: LabelIssues, images: np.ndarray, top: int,
             neighbours: Mapping[int, Sequence[tuple[int, str]]] | None = None) -> str:
    cards = []
    for r in issues.records(top):
        png = plots.thumbnail_png(images[r["index"]], size=96)
        near = (neighbours or {}).get(int(r["index"]))
        cards.append(
            f"<figure class='suspect' title='{_e(r['reason'])}'>{_img(png, 'example ' + str(r['index']), 'thumb')}"
            f"<figcaption><div class='lab'><span class='given'>{_e(r['given_label'])}</span> &rarr; "
            f"<span class='sugg'>{_e(r['suggested_label'])}</span></div>"
            f"<div>#{r['index']} {_e(r['id'])} · score {r['score']:.3f}</div>"
            f"<div class='reason'>{_e(r['reason'])}</div>"
            + (_neighbour_strip(images, near) if near else "") + "</figcaption></figure>")
    return f"<div class='gallery' id='gallery' data-expected='{len(cards)}'>{''.join(cards)}</div>"


def _rows(issues: LabelIssues, features: np.ndarray | None, feature_names: Sequence[str] | None, top: int,
          max_features: int = 8) -> str:
    d = 0 if features is None else min(features.shape[1], max_features)
    names = list(feature_names or [f"x{j}" for j in range(d)])[:d]
    head = "".join(f"<th>{_e(n)}</th>" for n in names)
    body = []
    for r in issues.records(top):
        feats = "".join(f"<td>{features[r['index'], j]:.3g}</td>" for j in range(d)) if d else ""
        body.append(f"<tr><td>{r['index']}</td><td class='l id'>{_e(r['id'])}</td><td class='l given'>"
                    f"{_e(r['given_label'])}</td><td class='l sugg'>{_e(r['suggested_label'])}</td>"
                    f"<td>{r['score']:.3f}</td>{feats}<td class='l'>{_e(r['reason'])}</td></tr>")
    more = f" (first {d} of {features.shape[1]} features)" if features is not None and features.shape[1] > d else ""
    return (f"<p class='note'>Feature values{more} as given.</p><table id='suspect-rows'><tr><th>index</th>"
            f"<th class='l'>id</th><th class='l'>given</th><th class='l'>suggested</th><th>score</th>{head}"
            f"<th class='l'>reason</th></tr>{''.join(body)}</table>")


def render_report(issues: LabelIssues, *, inputs: np.ndarray | None = None,
                  feature_names: Sequence[str] | None = None, title: str = "Label audit",
                  subtitle: str = "", top: int = 24, feature_image: str = "auto", why: str | None = None,
                  cautions: Sequence[str] | None = None,
                  neighbours: Mapping[int, Sequence[tuple[int, str]]] | None = None) -> str:
    """The report as an HTML string.

    Parameters
    ----------
    issues : LabelIssues
    inputs : ndarray, optional
        The source inputs indexed by ``issues.index``: uint8 images ``[N, H, W, C]`` (gallery) or
        feature rows ``[N, D]`` (table). Without them the suspects are listed without inputs.
    feature_names : sequence of str, optional
    title, subtitle : str
    top : int
        How many suspects the gallery (or feature table) shows, most suspicious first; the table of
        all flagged examples follows it.
    feature_image : str
        Feature rows as images: ``auto``, ``off``, ``HxW`` or ``HxWxC`` (see ``feature_images.py``).
    why : str, optional
        Why this detector ran (the audit's default says what evidence chose it).
    cautions : sequence of str, optional
        What a reader must know before acting on the flags (the audit's model-quality warnings), shown in a
        box above the summary; nothing when empty. None (default): the warnings the issues carry
        (``issues.info["model_quality"]``, e.g. from :func:`~noisyfit.detect.audit_label_issues`).
    neighbours : mapping, optional
        Source index of a suspect -> its nearest neighbours as ``(source index, given label name)``, nearest first
        (an embedding audit's): the gallery shows the first six under each suspect.
    """
    if cautions is None:
        cautions = ((issues.info or {}).get("model_quality") or {}).get("warnings") or ()
    det = issues.detection_metrics()
    # ndim without np.asarray: streamed images (ImageFiles) decode only the thumbnails shown, not the whole set
    ndim = None if inputs is None else getattr(inputs, "ndim", None) or np.asarray(inputs).ndim
    as_images = None if ndim != 2 else feature_images(inputs, feature_image)
    if ndim == 4:
        suspects = _gallery(issues, inputs, top, neighbours)
        kind = "thumbnails"
    elif as_images is not None:
        rule = f"<p class='note' id='feature-image-rule'>{_e(as_images.note)}</p>"
        suspects = rule + _gallery(issues, as_images, top, neighbours)
        kind = "thumbnails"
    else:
        suspects = _rows(issues, None if inputs is None else np.asarray(inputs), feature_names, top)
        kind = "rows"
    shown = min(top, issues.num_issues)
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>{_e(title)}</title><link rel='icon' href='data:,'><style>{_CSS}{flagged_table.CSS}</style>"
        "</head><body>",
        (f"<header><h1>{_e(title)}</h1><p>{_e(subtitle)}</p><p>Detector: {_e(issues.detector)} · rule: "
         f"{_e(issues.rule)}</p>" + (f"<p id='detector-why'>Why this detector: {_e(why)}</p>" if why else "")
         + f"<p>Generated {_e(time.strftime('%Y-%m-%d %H:%M'))}</p></header><main>"),
        (("<section id='cautions'><h2>Before you act on these flags</h2><ul>"
          + "".join(f"<li>{_e(c)}</li>" for c in cautions) + "</ul></section>") if cautions else ""),
        f"<section id='summary'><h2>Summary</h2>{_tiles(issues, det)}</section>",
        _noise_section(issues), _class_section(issues), _score_section(issues), _annotator_section(issues),
        (f"<section id='suspects'><h2>Top {shown} suspects ({kind})</h2><p class='note'>Most suspicious first "
         "(lowest score). Given label in red, suggested label in green; the reason says which signal fired, "
         f"its value and threshold. Every flagged example is in the table below (and in an audit's issues.csv).</p>"
         f"{suspects}</section>"),
        flagged_table.flagged_section(issues), _review_section(issues),
        f"</main><script>{_SCRIPT}{flagged_table.SCRIPT}</script></body></html>",
    ]
    return "".join(parts)


def write_report(path: str | Path, issues: LabelIssues, **kwargs) -> Path:
    """Write :func:`render_report` to ``path`` (UTF-8); returns the path."""
    path = Path(path)
    path.write_text(render_report(issues, **kwargs), encoding="utf-8")
    return path
