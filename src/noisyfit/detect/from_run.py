"""Label issues from a finished noisyfit run, using the method's own per-sample signal.

The trainer writes ``results.json`` (method name, ``method.flag_rule``) and ``per_sample.npz``
(``train_index, given, true, clean_score, flag, suggested, probs``). Each method decides there what its
signal is: CE/PEMM the posterior of the given label, DivideMix/PLReMix a GMM posterior of being clean,
BKD its Otsu group, Jump-teaching its flags, CAR its confidence. So the audit does not re-derive
anything: the flags are the method's, the reason quotes its ``flag_rule`` with this example's value
and any method-specific per-sample column (``per_sample_extras``, e.g. ``bkd_group``).

The noise estimate is the method's own (``results.json`` ``method.estimated_noise_rate`` when the
trainer records it, else the flag rate); the transition matrix counts each flagged example as truly
of its suggested class and every other example as correctly labelled.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from noisyfit.detect.count import NoiseEstimate
from noisyfit.detect.issues import LabelIssues, names_or_indices
from noisyfit.detect.validation import DetectInputError

_RESULTS_SCHEMA_PREFIX = "noisyfit.results/"
#: per_sample.npz keys of the Method contract; any other [N] array is a method's extra (e.g. BKD's groups)
_STANDARD_KEYS = {"train_index", "val_index", "given", "true", "clean_score", "flag", "suggested", "probs",
                  "class_names"}


def _read_run(run_dir: Path) -> tuple[dict, dict]:
    results_path, ps_path = run_dir / "results.json", run_dir / "per_sample.npz"
    if not run_dir.is_dir():
        raise DetectInputError(f"run folder {run_dir} not found; pass the --out folder of a finished "
                               "`noisyfit train` run.")
    for path in (results_path, ps_path):
        if not path.is_file():
            raise DetectInputError(f"{path} not found: the run has not finished. Finish it with `noisyfit train "
                                   f"--resume --out {run_dir}` (or train one with --out {run_dir}).")
    try:
        results = json.loads(results_path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise DetectInputError(f"{results_path}: not valid JSON ({err}); rerun the training.") from err
    schema = str(results.get("schema", ""))
    if not schema.startswith(_RESULTS_SCHEMA_PREFIX):
        raise DetectInputError(f"{results_path}: schema {schema!r} is not a noisyfit results file "
                               f"({_RESULTS_SCHEMA_PREFIX}N).")
    try:
        with np.load(ps_path, allow_pickle=False) as z:
            per_sample = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError) as err:
        raise DetectInputError(f"{ps_path}: cannot read ({err}); rerun the training.") from err
    if "given" not in per_sample:
        raise DetectInputError(f"{ps_path}: no 'given' labels array (found {sorted(per_sample)}).")
    return results, per_sample


def rule_threshold(rule: str, scores: np.ndarray, flags: np.ndarray) -> float | None:
    """The cut on ``scores`` behind ``flags`` when the flags are exactly ``score < t`` for one ``t``.

    The number in the rule (``"p(given label) < 0.5"``) is used when it separates the scores as the
    flags do; otherwise the midpoint of the gap between flagged and unflagged scores, if there is one.
    Methods whose flags are not a cut on the clean score (e.g. Jump-teaching codes) give None.
    """
    if flags.all() or not flags.any():
        return None
    hi_flag, lo_clean = float(scores[flags].max()), float(scores[~flags].min())
    if hi_flag >= lo_clean:
        return None
    # "< 0.5", "<= 0.5" or "< mu_low = 0.0576"
    m = re.search(r"<=?\s*(?:[\w()]+\s*=\s*)?([-+]?\d*\.?\d+(?:[eE][-+]?\d+)?)", rule)
    if m is not None and hi_flag < float(m.group(1)) <= lo_clean + 1e-12:
        return float(m.group(1))
    return (hi_flag + lo_clean) / 2.0


def _fmt(v) -> str:
    return f"{v:.3f}" if isinstance(v, (float, np.floating)) else str(v)


def issues_from_run(run_dir: str | Path, *, ids: list[str] | None = None) -> LabelIssues:
    """Audit a finished noisyfit run with the method's own flags, clean scores and suggested labels.

    Parameters
    ----------
    run_dir : path
        A ``noisyfit train --out`` folder with ``results.json`` and ``per_sample.npz``.
    ids : list of str, optional
        File names / row ids of the *source* training set (indexed by ``train_index``).

    Returns
    -------
    LabelIssues
        ``index`` = position in the source training set (validation rows held out by the run are not
        audited); ``scores`` = the method's clean scores; ``noise`` from its own decisions.
    """
    run_dir = Path(run_dir)
    results, ps = _read_run(run_dir)
    issues = issues_from_outputs(results, ps, ids=ids, where=f"{run_dir / 'per_sample.npz'}")
    issues.info["run_dir"] = str(run_dir)
    return issues


def issues_from_outputs(results: dict, ps, *, ids: list[str] | None = None, where: str = "per-sample outputs") -> LabelIssues:
    """:func:`issues_from_run` on a run's contents in memory: its ``results.json`` dict (the ``method`` and
    ``data`` parts are read) and its ``per_sample.npz`` arrays (a dict of arrays); ``where`` names them in errors."""
    given = ps["given"].astype(np.int64)
    n = len(given)
    method = results.get("method", {})
    name = method.get("name", "?")
    rule = method.get("flag_rule") or "method's flag"
    data = results.get("data", {})
    stored = [str(c) for c in ps["class_names"]] if "class_names" in ps else data.get("class_names")
    class_names = names_or_indices(stored, int(data.get("num_classes") or given.max() + 1))
    probs = ps.get("probs")
    probs = probs if probs is not None and probs.ndim == 2 and len(probs) == n else None
    if "clean_score" in ps:
        scores = ps["clean_score"].astype(np.float64)
    elif probs is not None:
        scores = probs[np.arange(n), given].astype(np.float64)
    else:
        raise DetectInputError(f"{where}: neither clean_score nor probs; the method "
                               f"{name!r} exposes no per-sample signal to audit.")
    if "flag" in ps:
        flags = ps["flag"].astype(bool)
    else:  # the default rule of the Method contract
        flags = scores < 0.5
        rule = f"{rule} (no flags saved: clean score < 0.5)"
    if "suggested" in ps:
        suggested = ps["suggested"].astype(np.int64)
    elif probs is not None:
        suggested = probs.argmax(axis=1)
    else:
        suggested = given.copy()
    threshold = rule_threshold(rule, scores, flags)
    extras = {k: v for k, v in ps.items() if k not in _STANDARD_KEYS and v.shape == (n,)}
    reasons = {}
    for i in np.flatnonzero(flags).tolist():
        s = int(suggested[i])
        sug = f"; suggests {class_names[s]}" + (f" (p = {probs[i, s]:.3f})" if probs is not None else "")
        more = "".join(f"; {k} = {_fmt(v[i])}" for k, v in extras.items())
        reasons[i] = f"{name}: {rule} -- clean score {scores[i]:.3f}{sug}{more}"
    # the method's decisions as a joint of (given, true): flagged -> its suggestion, else the given label
    true_guess = np.where(flags, suggested, given)
    c = len(class_names)
    counts = np.bincount(given * c + true_guess, minlength=c * c).reshape(c, c)
    noise = NoiseEstimate.from_joint(counts, method=f"{name}'s flags and suggested labels",
                                     num_label_issues=int(flags.sum()))
    est = method.get("estimated_noise_rate")
    if est is None:
        est = (results.get("detection") or {}).get("estimated_noise_rate")
    if est is not None:
        noise.noise_rate = float(est)
    index = ps.get("train_index", np.arange(n)).astype(np.int64)
    return LabelIssues(
        is_issue=flags, given=given, suggested=suggested, scores=scores, reasons=reasons, class_names=class_names,
        detector=f"noisyfit method {name}", rule=rule, score_name=f"{name} clean score", threshold=threshold,
        noise=noise, index=index, ids=[ids[int(i)] for i in index] if ids is not None else None,
        true_labels=ps.get("true"),
        suggested_confidence=None if probs is None else probs[np.arange(n), np.clip(suggested, 0, None)],
        info={"method": name, "hyper": method.get("hyper"),
              "seed": results.get("seed"), "test_acc": (results.get("final") or {}).get("test_acc"),
              "train_seconds": (results.get("compute") or {}).get("train_seconds_total"),
              "data_source": data.get("source"), "noise": data.get("noise"),
              "num_val_not_audited": data.get("num_val", 0), "per_sample_extras": sorted(extras)})
