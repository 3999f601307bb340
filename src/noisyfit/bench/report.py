"""`noisyfit bench report`: the result files -> ``benchmarks/RESULTS.md`` and ``benchmarks/plots/``.

The markdown is generated, never typed: every number comes from a result JSON. Per suite: an
evidence header (machines, torch, commits, dates, seeds), accuracy (last and noisy-val-selected,
mean ± std with n per cell), recovery ratios against CE and the clean-label oracle, detection,
cost as ratios to CE of the same suite and label set, failed or unavailable rows, and plots.
Published numbers come last, in their own tables.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections import Counter
from pathlib import Path

from noisyfit.bench.aggregate import Cell, build_cells, core_protocol, mean_std, recovery_ratio
from noisyfit.bench.files import StoredRun, read_notes, read_suite
from noisyfit.bench.published import CIFAR10N_PUBLISHED
from noisyfit.bench.suites import CLEANLAB, ORACLE, SUITES

DASH = "–"
SINGLE = "†"
OTHER_PROTOCOL = "‡"


# ------------------------------------------------------------------------------------------ formatting
def fmt_stat(values: list[float], *, scale: float = 1.0, digits: int = 2, with_n: bool = False) -> str:
    """``mean ± std`` (``mean`` alone for one value), optionally with ``(n=k)`` and † for n = 1."""
    m, s, n = mean_std(values)
    if m is None:
        return DASH
    text = f"{m * scale:.{digits}f}" + (f" ± {s * scale:.{digits}f}" if s is not None else "")
    if with_n:
        text += f" (n={n})" + (SINGLE if n == 1 else "")
    return text


def fmt_ratio(value: float | None, ref: float | None) -> str:
    if value is None or ref is None or ref <= 0:
        return DASH
    return f"{value / ref:.2f}×"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def _n_text(cell: Cell) -> str:
    return f"{cell.n}{SINGLE if cell.n == 1 else ''}"


# ------------------------------------------------------------------------------------------ evidence
def _machine_text(run: StoredRun) -> str:
    from noisyfit.engine.machine import machine_text

    return machine_text(run.data)


def _counted(counter: Counter) -> str:
    return "; ".join(f"{k} ({v} run{'s' if v != 1 else ''})" for k, v in counter.most_common())


def _short_commit(commit: str | None) -> str:
    if not commit:
        return "unknown"
    return commit[:12] + ("-dirty" if commit.endswith("-dirty") else "")


def _evidence(runs: list[StoredRun]) -> list[str]:
    created = sorted(r.data.get("created") or "" for r in runs if r.data.get("created"))
    seeds = sorted({r.seed for r in runs})
    commits = Counter(_short_commit(r.data.get("commit")) for r in runs)
    return [f"- **Runs:** {len(runs)} result files; seeds used: {', '.join(map(str, seeds))}; "
            f"run dates {created[0][:16] if created else '?'} to {created[-1][:16] if created else '?'}.",
            f"- **Machines:** {_counted(Counter(_machine_text(r) for r in runs))}.",
            f"- **Code:** commit {_counted(commits)}; noisyfit "
            f"{_counted(Counter(str(r.data.get('noisyfit_version')) for r in runs))}."]


def _protocol(cells: list[Cell]) -> list[str]:
    ref = next((c for c in cells if c.method == "ce" and c.variant == 0), cells[0] if cells else None)
    if ref is None:
        return []
    cfg = ref.runs[0].data.get("config") or {}
    mo, op, tr, da = (cfg.get(k, {}) for k in ("model", "optim", "train", "data"))
    args = f" `{json.dumps(mo.get('args'))}`" if mo.get("args") else ""
    return [f"- **Protocol (CE's config):** backbone `{mo.get('backbone')}`{args}, "
            f"{tr.get('epochs')} epochs, batch {tr.get('batch_size')}, {op.get('name')} lr {op.get('lr')} "
            f"({op.get('schedule')}), precision {tr.get('precision')}, "
            f"{100 * float(da.get('val_fraction') or 0):.0f}% of the noisy training set held out as the "
            "validation split that selects the reported epoch."]


# ------------------------------------------------------------------------------------------ sections
def _label_sets(suite: str, cells: list[Cell]) -> list[str]:
    present = {c.label_set for c in cells}
    known = [ls.name for ls in SUITES[suite].label_sets] if suite in SUITES else []
    return [ls for ls in known if ls in present] + sorted(present - set(known))


def _clean_set(suite: str, cells: list[Cell]) -> str | None:
    oracle = next((c for c in cells if c.method == ORACLE and c.variant == 0), None)
    return oracle.label_set if oracle else None


def _protocol_marks(cells: list[Cell]) -> dict[str, str]:
    """Row labels whose core protocol (backbone, epochs, ...) differs from CE's, with the differences."""
    ce = next((c for c in cells if c.method == "ce" and c.variant == 0), None)
    if ce is None:
        return {}
    ref = core_protocol(ce.runs[0])
    marks = {}
    for c in cells:
        if c.method == CLEANLAB:
            continue
        mine = core_protocol(c.runs[0])
        diff = [f"{k}={mine[k]!r} (CE: {ref[k]!r})" for k in ref if mine[k] != ref[k]]
        if diff:
            marks[c.label] = "; ".join(diff)
    return marks


def _accuracy_section(cells: list[Cell], label_sets: list[str], marks: dict[str, str]) -> list[str]:
    rows_by_label: dict[str, dict[str, Cell]] = {}
    for c in cells:
        if c.method != CLEANLAB:
            rows_by_label.setdefault(c.label, {})[c.label_set] = c
    header = ["method"] + [f"{ls}: {kind}" for ls in label_sets for kind in ("last", "selected")]
    rows = []
    for label, by_ls in rows_by_label.items():
        row = [_mark(label, marks)]
        for ls in label_sets:
            c = by_ls.get(ls)
            row += [fmt_stat(c.values("final", "test_acc"), scale=100, with_n=True) if c else DASH,
                    fmt_stat(c.values("selected", "test_acc"), scale=100, with_n=True) if c else DASH]
        rows.append(row)
    return ["#### Test accuracy (%)", ""] + _table(header, rows)


def best_minus_last(run: StoredRun) -> tuple[float, int] | None:
    """(best epoch's test accuracy minus the last epoch's, 1-based best epoch) of a run's curve, or None.

    The best epoch is chosen on the test set: only a measure of how much accuracy the end of training lost
    (memorisation of the wrong labels), never a reported accuracy.
    """
    accs = [e.get("test_acc") for e in run.data.get("epochs") or []]
    if not accs or any(not isinstance(a, (int, float)) for a in accs):
        return None
    best = max(range(len(accs)), key=lambda i: (accs[i], -i))  # the first of equal maxima
    return accs[best] - accs[-1], best + 1


def _late_loss_section(cells: list[Cell], label_sets: list[str]) -> list[str]:
    rows = []
    for c in cells:
        if c.method == CLEANLAB or c.label_set not in label_sets:
            continue
        got = [g for g in (best_minus_last(r) for r in c.runs) if g is not None]
        if not got:
            continue
        rows.append([c.label, c.label_set, fmt_stat([g[0] for g in got], scale=100, with_n=True),
                     ", ".join(str(g[1]) for g in got)])
    if not rows:
        return []
    return ["#### Accuracy lost by the end of training (points)", "",
            "Best epoch's test accuracy minus the last epoch's, per run (the best epoch picked on the test "
            "set, so this measures memorisation and is never a reported accuracy); *best epoch* lists each "
            "seed's. A method that stops memorisation keeps this near 0 where CE's is large.", ""] + \
        _table(["method", "label set", "best − last", "best epoch"], rows)


def _head_accuracies(run: StoredRun) -> dict[str, tuple[float | None, float | None]]:
    """``{head: (last-epoch test acc, test acc at the selected epoch)}`` of a run's extra predictors.

    Methods with more than one predictor (Jump-teaching's code decoding, a co-trained peer) log
    ``test_acc_<head>`` in every evaluated epoch; the main tables use ``test_acc`` (``predict_logits``).
    """
    epochs = run.data.get("epochs") or []
    if not epochs:
        return {}
    sel = (run.data.get("selected") or {}).get("epoch")
    at_sel = next((e for e in epochs if e.get("epoch") == sel), {})
    heads = sorted(k[len("test_acc_"):] for k in epochs[-1] if k.startswith("test_acc_"))
    return {h: (epochs[-1].get(f"test_acc_{h}"), at_sel.get(f"test_acc_{h}")) for h in heads}


def _other_heads_section(cells: list[Cell]) -> list[str]:
    rows = []
    for c in cells:
        per_head: dict[str, tuple[list[float], list[float]]] = {}
        for r in c.runs:
            for head, (last, sel) in _head_accuracies(r).items():
                lasts, sels = per_head.setdefault(head, ([], []))
                lasts += [last] if isinstance(last, (int, float)) else []
                sels += [sel] if isinstance(sel, (int, float)) else []
        for head, (lasts, sels) in sorted(per_head.items()):
            rows.append([c.label, c.label_set, "main (`test_acc`)",
                         fmt_stat(c.values("final", "test_acc"), scale=100, with_n=True),
                         fmt_stat(c.values("selected", "test_acc"), scale=100, with_n=True)])
            rows.append([c.label, c.label_set, head, fmt_stat(lasts, scale=100, with_n=True),
                         fmt_stat(sels, scale=100, with_n=True)])
    if not rows:
        return []
    return (["#### Other predictors of the same runs (%)", "",
             "Methods with a second predictor log its test accuracy too. The tables above use the main "
             "predictor; *selected* here is the second predictor's test accuracy at the epoch the main "
             "predictor's noisy-validation accuracy selected.", ""]
            + _table(["method", "label set", "predictor", "last", "selected"], rows))


def _mark(label: str, marks: dict[str, str]) -> str:
    return label + (f" {OTHER_PROTOCOL}" if label in marks else "")


def _recovery_section(cells: list[Cell], label_sets: list[str], clean: str | None,
                      marks: dict[str, str]) -> list[str]:
    first = {(c.method, c.label_set): c for c in cells if c.variant == 0}
    oracle = first.get((ORACLE, clean)) if clean else None
    noisy = [ls for ls in label_sets if ls != clean]
    header = ["method"] + [f"{ls}: R {kind}" for ls in noisy for kind in ("selected", "last")]
    rows = []
    for c in cells:
        if c.method in ("ce", ORACLE, CLEANLAB) or c.label_set not in noisy:
            continue
        ce = first.get(("ce", c.label_set))
        cols = {}
        for kind, key in (("selected", "selected"), ("last", "final")):
            parts = [x for x in (c, ce, oracle)]
            means = [mean_std(x.values(key, "test_acc"))[0] if x else None for x in parts]
            r = recovery_ratio(*means)
            single = any(x is not None and x.n == 1 for x in parts)
            cols[kind] = DASH if r is None else f"{r:.2f} (n={c.n}){SINGLE if single else ''}"
        rows.append((_mark(c.label, marks), c.label_set, cols))
    if not rows:
        why = "no oracle run" if oracle is None else "no CE run on the same label set" if not any(
            ("ce", ls) in first for ls in noisy) else "no method besides CE"
        return ["#### Recovery ratio", "", f"Not computed: {why}."]
    table_rows: dict[str, list[str]] = {}
    for label, ls, cols in rows:
        row = table_rows.setdefault(label, [label] + [DASH] * (2 * len(noisy)))
        i = 1 + 2 * noisy.index(ls)
        row[i], row[i + 1] = cols["selected"], cols["last"]
    return (["#### Recovery ratio R = (acc − acc_CE) / (acc_oracle − acc_CE)", "",
             "0 = no better than CE, 1 = as accurate as CE trained on the clean labels; means over seeds, "
             f"n = the method's seeds ({SINGLE}: the method, CE or the oracle has a single seed)."]
            + [""] + _table(header, list(table_rows.values())))


def break_even_from_pr(pr: dict) -> float | None:
    """Precision = recall point of a stored, thinned precision-recall curve (``.pr.json``), by linear
    interpolation between the two kept points around the crossing: an approximation of
    :func:`noisyfit.metrics.f1_at_true_k` for runs recorded before that figure existed."""
    prec, rec = pr.get("precision") or [], pr.get("recall") or []
    diffs = [p - r for p, r in zip(prec, rec)]
    for i in range(1, len(diffs)):
        if diffs[i - 1] <= 0 <= diffs[i] or diffs[i - 1] >= 0 >= diffs[i]:
            d0, d1 = diffs[i - 1], diffs[i]
            t = 0.0 if d0 == d1 else d0 / (d0 - d1)
            return prec[i - 1] + t * (prec[i] - prec[i - 1])
    return None


def _common_rule_f1(c: Cell) -> tuple[str, bool]:
    """The cell's F1 at k = the true number of wrong labels; True when approximated from PR points."""
    exact = c.values("detection", "f1_at_true_k")
    if len(exact) == c.n:
        return fmt_stat(exact, scale=100, digits=1), False
    approx = []
    for r in c.runs:
        v = (r.data.get("detection") or {}).get("f1_at_true_k")
        if v is None and r.sidecar("pr").is_file():
            v = break_even_from_pr(json.loads(r.sidecar("pr").read_text()))
        if v is not None:
            approx.append(v)
    return (fmt_stat(approx, scale=100, digits=1) + " ≈", True) if approx else (DASH, False)


NO_FLAGS = "no flags"


def _precision_cell(c: Cell) -> tuple[str, bool]:
    """Precision over the runs that flagged something: with no flag it is 0/0 (None in result files; files
    written before 2026-12-07 store 0.0), and a 0.00 would read as "every flag wrong"."""
    kept, unflagged = [], 0
    for r in c.runs:
        det = r.data.get("detection") or {}
        v = det.get("precision")
        if det.get("num_flagged") == 0:
            unflagged += 1
        elif isinstance(v, (int, float)) and math.isfinite(v):
            kept.append(float(v))
    if unflagged and not kept:
        return NO_FLAGS, True
    text = fmt_stat(kept, scale=100, digits=1)
    return (text + f" ({unflagged} of {len(c.runs)} runs: {NO_FLAGS})" if unflagged else text), bool(unflagged)


def _detection_section(cells: list[Cell], clean: str | None, marks: dict[str, str]) -> list[str]:
    header = ["method", "label set", "n", "precision", "recall", "F1", "F1, common rule", "AUROC", "AUPRC",
              "est. noise", "true noise"]
    rows, rules, approximated, any_unflagged = [], {}, False, False
    for c in cells:
        if c.label_set == clean or c.method == ORACLE:
            continue
        if not c.values("detection", "true_noise_rate"):
            continue
        pct = [fmt_stat(c.values("detection", k), scale=100, digits=1)
               for k in ("precision", "recall", "f1", "auroc", "auprc", "estimated_noise_rate",
                         "true_noise_rate")]
        pct[0], none_flagged = _precision_cell(c)
        any_unflagged |= none_flagged
        common, approx = _common_rule_f1(c)
        approximated |= approx
        rows.append([_mark(c.label, marks), c.label_set, _n_text(c), *pct[:3], common, *pct[3:]])
        rule = (c.runs[0].data.get("method") or {}).get("flag_rule")
        if rule:
            rules[c.label] = rule
    if not rows:
        return []
    out = ["#### Detection of the wrong labels (%)", "",
           "Precision / recall / F1 of each method's own flagged set; AUROC / AUPRC of its per-sample clean "
           "scores; estimated vs true noise rate of the training split. Own-rule F1 is not comparable across "
           "methods whose rules cut at different thresholds: *F1, common rule* flags every method's k lowest "
           "clean scores, k = the true number of wrong labels (there precision = recall = F1), so it ranks "
           "the scores, not the thresholds."
           + (" ≈ marks runs recorded before the figure existed: read off their stored 101-point "
              "precision-recall curve by linear interpolation (within a fraction of a point)." if approximated
              else "")
           + (f" *{NO_FLAGS}*: the run flagged no example, so its precision is undefined (result files store 0);"
              " a mean over seeds leaves such runs out of the precision only." if any_unflagged else "")]
    out += [""] + _table(header, rows)
    out += ["", "Flag rules: " + "; ".join(f"**{k}**: {v}" for k, v in rules.items()) + "."]
    if any("official fallback" in v for v in rules.values()):
        # recorded text of older runs, kept as written; the correction sits beside it
        out += ["", "Correction: the BKD rules above that say *official fallback* were written by an earlier "
                "version. The fallback (a forced tipping epoch when no peak is found) is an option of ours; the "
                "official code at its HEAD has none (`noisyfit.methods.bkd`, `fallback_epoch`)."]
    return out


#: per-epoch figures the trainer records for every method with ``train.track_fit`` (see Trainer._fit_figures)
FIT_KEYS = ("fit_clean", "memorised")
HEALTH_POINTS = 8  # epochs shown per figure (evenly spaced, the last always included)


def _fmt_health(v) -> str:
    if v is None:
        return DASH
    v = float(v)
    return f"{v:.0f}" if v.is_integer() and abs(v) >= 2 else f"{v:.3g}"


def _health_rows(cell: Cell) -> list[list[str]]:
    run = min(cell.runs, key=lambda r: r.seed)
    epochs = run.data.get("epochs") or []
    series: dict[str, list[tuple[int, object]]] = {}
    for e in epochs:
        for k in FIT_KEYS:
            if e.get(k) is not None:
                series.setdefault(k, []).append((e["epoch"] + 1, e[k]))
        for k, v in (e.get("health") or {}).items():
            series.setdefault(k, []).append((e["epoch"] + 1, v))
    rows = []
    ordered = [k for k in FIT_KEYS if k in series] + [k for k in series if k not in FIT_KEYS]
    for key in ordered:
        points = series[key]
        idx = sorted({round(i * (len(points) - 1) / max(HEALTH_POINTS - 1, 1)) for i in range(HEALTH_POINTS)})
        shown = " · ".join(f"e{points[i][0]} {_fmt_health(points[i][1])}" for i in idx if i < len(points))
        rows.append([cell.label, cell.label_set, str(run.seed), f"`{key}`", shown, _fmt_health(points[-1][1])])
    return rows


def _health_section(cells: list[Cell]) -> list[str]:
    rows = [r for c in cells if c.method != CLEANLAB for r in _health_rows(c)]
    if not rows:
        return []
    return (["#### Mechanism health (lowest seed of each row)", "",
             "What each mechanism did, epoch by epoch, scored against the true labels (the methods never see "
             "them). `fit_clean` / `memorised`: share of correctly / wrongly labelled training samples that "
             "the model predicts as their given label (eval mode): memorisation is `memorised` rising. "
             "`<name>_share` / `_precision` / `_recall`: size of a selected set, the share of it whose label "
             "is right, and the share of right labels it holds; `_auroc`: a per-sample score's AUROC for "
             "clean against wrong labels; other names are the method's own figures (its docstring says "
             "what they mean).", ""]
            + _table(["method", "label set", "seed", "figure", "per epoch", "last"], rows))


def _others_cpu_text(c: Cell) -> str:
    shares = c.values("compute", "others_cpu_share_median")
    return DASH if not shares else f"{100 * max(shares):.0f}%"


def _wall_undercounted(data: dict) -> bool:
    """The trainer saw more sessions than the bench recorded: one bench session left no record."""
    trainer_sessions = len((data.get("compute") or {}).get("sessions") or [])
    bench_sessions = (data.get("bench") or {}).get("sessions")
    return bench_sessions is not None and trainer_sessions > bench_sessions


def _cost_section(cells: list[Cell], rank: str | None, marks: dict[str, str]) -> list[str]:
    first = {(c.method, c.label_set): c for c in cells if c.variant == 0}
    cuda = any(c.values("compute", "cuda_max_allocated_mb") for c in cells)
    header = ["method", "label set", "n", "s / epoch (median)", "× CE", "others' CPU", "peak RSS MB", "× CE",
              "wall / run", "× CE"]
    header += ["CUDA max alloc MB", "× CE"] if cuda else []
    rows, other_machine, undercounted = [], False, False
    for c in cells:
        ce = first.get(("ce", c.label_set)) or first.get(("ce", rank)) or next(
            (x for (m, _), x in first.items() if m == "ce"), None)

        def col(*path: str, digits: int = 2) -> list[str]:
            v = mean_std(c.values(*path))[0]
            ref = mean_std(ce.values(*path))[0] if ce else None
            return [DASH if v is None else f"{v:.{digits}f}", fmt_ratio(v, ref)]

        same = ce is not None and {_machine_text(r) for r in c.runs} == {_machine_text(r) for r in ce.runs}
        other_machine |= not same
        row = [_mark(c.label, marks) + ("" if same else " (≠ CE's machine)"), c.label_set, _n_text(c)]
        # the median epoch: one epoch slowed by another process on a shared machine does not move it
        per_epoch = "seconds_per_epoch_median" if c.values("compute", "seconds_per_epoch_median") else \
            "seconds_per_epoch"
        row += col("compute", per_epoch) + [_others_cpu_text(c)] + col("compute", "peak_rss_mb", digits=0)
        wall = col("bench", "wall_seconds", digits=1)
        if any(_wall_undercounted(r.data) for r in c.runs):
            wall, undercounted = [x if x == DASH else f"≥ {x}" for x in wall], True
        row += wall
        if cuda:
            row += col("compute", "cuda_max_allocated_mb", digits=0)
        rows.append(row)
    notes = ("Ratios divide means by CE's on the same label set of this suite (the rank label set for the "
             "oracle); wall / run is seconds from process start to exit, summed over resumed sessions; "
             "peak RSS is the run process's own (one process per run). *others' CPU* is the share of the "
             "machine's CPU time that other processes used during the run's timed training epochs (median "
             "epoch; the largest seed's in a cell): above a few % the run shared the machine and its "
             "s / epoch is inflated; – means not recorded (runs from before it was measured).")
    if undercounted:
        notes += (" ≥ marks a wall time that misses a session: its bench process was killed outright (the "
                  "machine stopping) before the bench kept a heartbeat of each session, so the sum is a lower "
                  "bound; the run's own per-epoch times above are complete.")
    if other_machine:
        notes += " Rows marked ≠ CE's machine ran elsewhere: their ratios compare machines, not methods."
    return ["#### Cost", "", notes, ""] + _table(header, rows)


def _notes_section(suite: str, suite_dir: Path, cells: list[Cell]) -> list[str]:
    out = []
    present = {c.method for c in cells}
    for method, ls, seed, kind, note in read_notes(suite_dir):
        if kind == "failed":
            out.append(f"- {method} · {ls} · seed {seed}: **failed** (exit {note.get('returncode')}, "
                       f"{str(note.get('failed', ''))[:16]}); not in the tables.")
        else:
            out.append(f"- {method} · {ls} · seed {seed}: **unavailable**: {note.get('reason')}.")
    if suite in SUITES:
        missing = [m for m in SUITES[suite].planned_rows() if m not in present]
        if missing:
            out.append(f"- Planned methods with no result in this suite yet: {', '.join(missing)}.")
    return ["#### Not in the tables", ""] + out if out else []


def _suite_section(suite: str, suite_dir: Path, runs: list[StoredRun], plots: list[tuple[str, Path]],
                   md_dir: Path) -> list[str]:
    cells = build_cells(runs)
    label_sets = _label_sets(suite, cells)
    clean = _clean_set(suite, cells)
    marks = _protocol_marks(cells)
    desc = SUITES[suite].description if suite in SUITES else "(not a suite of this noisyfit version)"
    out = [f"## Suite `{suite}`", "", desc, ""] + _evidence(runs) + _protocol(cells) + [""]
    out += _accuracy_section(cells, label_sets, marks) + [""]
    late = _late_loss_section(cells, label_sets)
    out += late + ([""] if late else [])
    if marks:
        out += [f"{OTHER_PROTOCOL} protocol differs from CE's: "
                + "; ".join(f"**{k}**: {v}" for k, v in marks.items()) + ".", ""]
    variants = [c for c in cells if c.variant]
    if variants:
        out += ["Variants (configs that differ from the method's main row in more than the seed, so never "
                "averaged with it): "
                + "; ".join(f"**{c.label}** on {c.label_set}: {', '.join(c.differs) or 'result schema'}"
                            for c in variants) + ".", ""]
    heads = _other_heads_section(cells)
    out += heads + ([""] if heads else [])
    out += _recovery_section(cells, label_sets, clean, marks) + [""]
    det = _detection_section(cells, clean, marks)
    out += det + ([""] if det else [])
    health = _health_section(cells)
    out += health + ([""] if health else [])
    out += _cost_section(cells, SUITES[suite].rank_label_set if suite in SUITES else None, marks) + [""]
    notes = _notes_section(suite, suite_dir, cells)
    out += notes + ([""] if notes else [])
    if plots:
        out += ["#### Plots", ""]
        for caption, p in plots:
            out += [f"![{suite}: {caption}]({Path(os.path.relpath(p, md_dir)).as_posix()})", ""]
    return out


def _published_section() -> list[str]:
    out = ["## Published reference numbers (not ours)", "",
           "Other backbones, schedules, data (original CIFAR pixels, not our JPEG copy) and, for most rows, "
           "model selection on the test set: read them as context, not as a column of our tables.", ""]
    for t in CIFAR10N_PUBLISHED:
        out += [f"**{t.title}.** Backbone: {t.backbone}; selection: {t.selection}; seeds: {t.seeds}. "
                f"Source: {t.source}.", ""]
        out += _table(["method"] + [f"{c} (%)" for c in t.columns], [[m, *v] for m, v in t.rows]) + [""]
    return out


#: result folders of run grids that are not suites and have their own generated table: never pooled into
#: or shown as a suite here (the recipe ablation's rows are CE with one trick each: benchmarks/recipe_ablation.py)
OWN_TABLES = {"recipe-ablation": "benchmarks/RECIPE_ABLATION.md", "jpeg-gap": "benchmarks/JPEG_GAP.md"}


# ------------------------------------------------------------------------------------------ entry point
def render_report(results_root: Path, md_path: Path, *, plots_dir: Path | None,
                  now: str | None = None) -> tuple[str, int]:
    """The markdown text and the number of result files it was made from (plots written as a side effect)."""
    from noisyfit.bench.plots import matplotlib_available, suite_plots

    results_root, md_path = Path(results_root), Path(md_path)
    names = [d.name for d in sorted(results_root.iterdir()) if d.is_dir()] if results_root.is_dir() else []
    names = [s for s in names if s not in OWN_TABLES]
    names = [s for s in SUITES if s in names] + [s for s in names if s not in SUITES]
    per_suite = {s: read_suite(results_root / s) for s in names}
    total = sum(len(v) for v in per_suite.values())
    now = now or time.strftime("%Y-%m-%d %H:%M %Z")
    can_plot = plots_dir is not None and matplotlib_available()
    lines = ["# noisyfit benchmark results", "",
             f"> **Generated file: do not edit by hand.** Written by `noisyfit bench report` on {now} "
             f"from {total} result file(s) in `{results_root.as_posix()}/` (one JSON per run with its "
             "command, commit, machine, seed, resolved config, per-epoch curves and metrics). Re-run the "
             "command to update it.", "",
             "How to read: accuracies are test accuracy in %, mean ± sample standard deviation over seeds, "
             f"n = seeds in the cell; {SINGLE} marks a single seed (no spread: read it as anecdotal). "
             "*selected* is the epoch with the best accuracy on the held-out noisy validation split (never "
             "chosen on the test set); *last* is the final epoch. A cell averages only runs whose configs "
             "agree on everything but the seed; each suite is one protocol and suites are never pooled.", ""]
    if not can_plot:
        why = "matplotlib is not installed" if plots_dir is not None else "disabled"
        lines += [f"(No plots: {why}.)", ""]
    if not total:
        lines += ["No result files yet: run `noisyfit bench --suite smoke` (or another suite) first.", ""]
    for s in names:
        if not per_suite[s]:
            continue
        cells = build_cells(per_suite[s])
        plots = suite_plots(s, cells, _label_sets(s, cells), plots_dir) if can_plot else []
        lines += _suite_section(s, results_root / s, per_suite[s], plots, md_path.parent)
    if any(SUITES[s].published for s in names if s in SUITES and per_suite[s]):
        lines += _published_section()
    return "\n".join(lines).rstrip() + "\n", total


def write_report(results_root: Path, out: Path, *, plots_dir: Path | None = None,
                 now: str | None = None) -> tuple[Path, int]:
    """Write ``out`` (RESULTS.md) and the plots (default ``out.parent / "plots"``).

    Returns
    -------
    (Path, int)
        The markdown path and the number of result files read.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    text, n = render_report(results_root, out, plots_dir=plots_dir or out.parent / "plots", now=now)
    out.write_text(text)
    return out, n
