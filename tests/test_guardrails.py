"""Guardrails: agreement with the given labels against chance, the near-chance warning, misaligned pred_probs."""

import json
import warnings

import numpy as np
import pytest

from noisyfit.cli import main
from noisyfit.data.sources import load_dataset
from noisyfit.detect.guardrails import QualityWarning, agreement_stats, check_pred_probs, model_quality


def test_agreement_stats_by_hand():
    # given 0 0 1 1, predicted 0 1 1 1: agreement 3/4; p_given = (.5, .5), p_pred = (.25, .75)
    s = agreement_stats(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]), 2)
    assert s["agreement"] == 0.75
    assert s["chance"] == pytest.approx(0.5 * 0.25 + 0.5 * 0.75)  # 0.5
    assert s["kappa"] == pytest.approx((0.75 - 0.5) / (1 - 0.5))  # 0.5
    assert s["z"] == pytest.approx(0.25 / np.sqrt(0.5 * 0.5 / 4))  # 1.0
    assert s["majority_share"] == 0.5
    # always predicting one class agrees exactly at chance: kappa 0
    s = agreement_stats(np.array([0, 0, 0, 1]), np.array([0, 0, 0, 0]), 2)
    assert s["agreement"] == s["chance"] == 0.75 and s["kappa"] == 0.0


def _probs(labels, correct, c, seed=0):
    """One-hot-ish probabilities whose argmax is the label on a `correct` share of rows, another class elsewhere."""
    rng = np.random.default_rng(seed)
    pred = labels.copy()
    wrong = rng.random(len(labels)) > correct
    pred[wrong] = (labels[wrong] + rng.integers(1, c, wrong.sum())) % c
    p = np.full((len(labels), c), 0.1 / (c - 1))
    p[np.arange(len(labels)), pred] = 0.9
    return p


def test_misaligned_pred_probs_warn_only_when_shuffled():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 400)
    probs = _probs(labels, 0.85, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning at all on aligned rows
        q = check_pred_probs(labels, probs, source="p.npy")
    assert q["aligned"] and q["warnings"] == [] and q["agreement"] == pytest.approx(np.mean(probs.argmax(1) == labels))
    shuffled = probs[rng.permutation(len(labels))]
    with pytest.warns(QualityWarning, match="only at chance level.*not in the order"):
        q = check_pred_probs(labels, shuffled, source="p.npy")
    assert not q["aligned"] and abs(q["kappa"]) < 0.1 and "p.npy" in q["warnings"][0]
    # columns in another class order than the data's (a user trial: pd.factorize's order, not the sorted one):
    # agreement below chance, said as below, and the class order named as a cause
    swapped = probs[:, [1, 2, 3, 0]]
    with pytest.warns(QualityWarning, match=r"standard errors below chance\).*or the columns not in the order of its "
                                            r"classes \(column k is class_names\[k\]"):
        q = check_pred_probs(labels, swapped, source="p.npy")
    assert not q["aligned"] and q["z"] < 0
    # a weak but aligned model (55% right on 4 classes, kappa ~0.4) is not called misaligned
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_pred_probs(labels, _probs(labels, 0.55, 4), source="p.npy")["aligned"]
    # shapes for the detector to reject: no verdict here
    assert check_pred_probs(labels[:10], probs) is None


def test_model_quality_per_fold_and_near_chance():
    labels = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2])
    true = labels.copy()
    true[0] = 1  # one label is wrong
    probs = np.eye(3)[true] * 0.8 + 0.2 / 3  # the model predicts the true class everywhere
    fold = np.array([0] * 6 + [1] * 6)
    q = model_quality(labels, probs, fold=fold, true_labels=true, what="m", warn=False)
    assert q["agreement"] == pytest.approx(11 / 12) and q["accuracy_true"] == 1.0
    assert [r["agreement_with_given"] for r in q["per_fold"]] == [pytest.approx(5 / 6), 1.0]
    assert [r["n"] for r in q["per_fold"]] == [6, 6] and not q["near_chance"]
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, 300)
    with pytest.warns(QualityWarning, match="near the .* chance"):
        q = model_quality(labels, rng.dirichlet(np.ones(3), 300), what="a guessing model")
    assert q["near_chance"] and q["kappa"] < 0.2


def test_audit_with_shuffled_pred_probs_says_so(tmp_path, capsys):
    labels = load_dataset("digits").train.labels
    probs = _probs(labels, 0.9, 10)
    np.save(tmp_path / "aligned.npy", probs)
    np.save(tmp_path / "shuffled.npy", probs[np.random.default_rng(0).permutation(len(labels))])
    for name in ("aligned", "shuffled"):
        assert main(["audit", "digits", "--pred-probs", str(tmp_path / f"{name}.npy"), "--out", str(tmp_path / name),
                     "--no-progress"]) == 0
        err = capsys.readouterr().err
        q = json.loads((tmp_path / name / "summary.json").read_text())["model_quality"]
        assert "model quality: pred_probs" in err
        if name == "aligned":
            assert q["aligned"] and "warning" not in err and q["agreement"] == pytest.approx(0.9, abs=0.03)
        else:
            assert not q["aligned"] and "noisyfit audit: warning: " in err and "chance level" in err


def test_a_run_that_flags_over_half_of_the_examples_is_called_too_weak():
    import warnings

    from noisyfit.detect.guardrails import QualityWarning, run_quality

    lines = []
    weak = {"method": {"name": "elr", "estimated_noise_rate": 0.52}, "final": {"test_acc": 0.456},
            "data": {"num_test": 1000}}
    with pytest.warns(QualityWarning, match="the elr run flags 52% of the examples \\(its test accuracy: 45.6%\\)"):
        q = run_quality(weak, log=lines.append)
    assert lines == ["model quality: the elr run: flags 52.0% of the examples; test accuracy 45.6% on 1,000 test "
                     "examples"] and len(q["warnings"]) == 1
    fine = {"method": {"name": "elr", "estimated_noise_rate": 0.43}, "final": {"test_acc": 0.8}, "data": {}}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # CIFAR-10N worst's level of flags: no warning
        assert run_quality(fine)["warnings"] == []
    memorised = {"method": {"name": "ce", "estimated_noise_rate": 0.0}, "final": {}, "data": {}}  # the demo's CE
    with pytest.warns(QualityWarning, match="the ce run flags 0.0% of the examples: .* memorised"):
        assert len(run_quality(memorised)["warnings"]) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run_quality({"method": {"name": "ce", "estimated_noise_rate": 0.012}, "final": {}, "data": {}})


def test_in_sample_pred_probs_are_called_so_from_python_and_in_the_report(tmp_path):
    # a model's predictions on its own training rows: argmax = every given label, p(given) 0.98 on average
    from noisyfit.detect import audit_label_issues
    from noisyfit.report import write_report

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 400)
    memorised = np.full((400, 4), 0.02 / 3)
    memorised[np.arange(400), labels] = 0.98
    with pytest.warns(QualityWarning, match="trained on these same labels"):
        issues = audit_label_issues(labels, memorised)
    q = issues.info["model_quality"]
    assert q["in_sample"] and q["agreement"] == 1.0 and q["mean_given_prob"] == pytest.approx(0.98)
    html = write_report(tmp_path / "r.html", issues).read_text()
    assert "Before you act on these flags" in html and "cross_val_predict" in html
    # out-of-sample-like probabilities (90% agreement, p(given) 0.9 or less): no such warning, no cautions box
    with warnings.catch_warnings():
        warnings.simplefilter("error", QualityWarning)
        fine = audit_label_issues(labels, _probs(labels, 0.9, 4))
    assert not fine.info["model_quality"]["in_sample"]
    assert "Before you act" not in write_report(tmp_path / "f.html", fine).read_text()
    # 99.5% agreement but p(given) only 0.9: a confident memoriser is needed for the warning
    q = check_pred_probs(labels, _probs(labels, 0.995, 4), warn=False)
    assert q["agreement"] >= 0.99 and q["mean_given_prob"] < 0.95 and not q["in_sample"]


def test_the_readme_python_audit_runs_as_written(tmp_path, monkeypatch):
    import contextlib
    import io
    import re
    from pathlib import Path

    readme = Path(__file__).resolve().parents[1] / "README.md"
    if not readme.exists():
        pytest.skip("README.md is not next to the tests")
    text = readme.read_text()
    code = re.search(r"```python\n(.*?)```", text[text.index("### Audit in Python"):], re.DOTALL).group(1)
    monkeypatch.chdir(tmp_path)  # it writes report.html
    out = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(out):
        warnings.simplefilter("error", QualityWarning)  # out-of-fold probabilities: no in-sample warning
        exec(compile(code, "README.md", "exec"), {"__name__": "readme_audit"})
    got = dict(re.findall(r"(flagged|truly wrong among them|estimated noise|after cleaning) ([0-9.]+)", out.getvalue()))
    assert float(got["truly wrong among them"]) > 0.6, out.getvalue()
    assert 0.1 < float(got["estimated noise"]) < 0.35 and float(got["after cleaning"]) < 0.15, out.getvalue()
    assert (tmp_path / "report.html").stat().st_size > 10_000
