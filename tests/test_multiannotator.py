"""Several annotators: majority vote, Dawid–Skene, annotator quality, auditing against the consensus."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from noisyfit.detect import annotator_quality, consensus_issues, dawid_skene, majority_vote

HAS_CROWDKIT = importlib.util.find_spec("crowdkit") is not None


def crowd(n=3000, c=4, seed=0):
    """Four annotators: three honest ones (72% right, errors uniform) and a bad one who is right 25% of
    the time and otherwise answers ``true + 1`` (a systematic confusion)."""
    rng = np.random.default_rng(seed)
    true = rng.integers(0, c, n)
    cols = []
    for _ in range(3):
        wrong = rng.random(n) > 0.72
        cols.append(np.where(wrong, (true + rng.integers(1, c, n)) % c, true))
    cols.append(np.where(rng.random(n) < 0.25, true, (true + 1) % c))
    ann = np.stack(cols, axis=1)
    ann[rng.random(ann.shape) < 0.1] = -1  # some annotations missing
    ann[(ann < 0).all(axis=1), 0] = true[(ann < 0).all(axis=1)]
    return ann, true


def test_majority_vote_by_hand():
    ann = np.array([[0, 0, 1], [2, -1, 2], [1, 2, -1], [0, 1, 2]])
    mv = majority_vote(ann, num_classes=3, tie_break="lowest")
    np.testing.assert_array_equal(mv, [0, 2, 1, 0])
    # random tie-breaking picks among the tied classes only, reproducibly
    draws = np.array([majority_vote(ann, num_classes=3, seed=s) for s in range(40)])
    assert set(draws[:, 2]) == {1, 2} and set(draws[:, 3]) == {0, 1, 2}
    np.testing.assert_array_equal(draws[:, :2], np.tile([0, 2], (40, 1)))
    np.testing.assert_array_equal(majority_vote(ann, num_classes=3, seed=3), majority_vote(ann, num_classes=3, seed=3))


def test_dawid_skene_beats_majority_vote_with_one_bad_annotator():
    ann, true = crowd()
    mv_acc = np.mean(majority_vote(ann, num_classes=4) == true)
    ds = dawid_skene(ann, num_classes=4, backend="builtin")
    ds_acc = np.mean(ds.labels == true)
    assert ds.converged
    assert ds_acc >= mv_acc + 0.05, (ds_acc, mv_acc)
    # it learned who is bad, and how: the bad annotator's confusion puts its mass on true + 1
    est = ds.annotator_accuracy
    assert int(np.argmin(est)) == 3
    assert est[3] == pytest.approx(0.25, abs=0.05) and np.all(np.abs(est[:3] - 0.72) < 0.05)
    for j in range(4):
        assert ds.confusions[3, j, (j + 1) % 4] > 0.6
    np.testing.assert_allclose(ds.posteriors.sum(axis=1), 1.0)


@pytest.mark.skipif(not HAS_CROWDKIT, reason="crowd-kit not installed (pip install 'noisyfit[crowd]')")
def test_crowdkit_backend_agrees_with_the_builtin_em():
    ann, _ = crowd(seed=1)
    ours = dawid_skene(ann, num_classes=4, backend="builtin")
    theirs = dawid_skene(ann, num_classes=4, backend="crowdkit")
    assert theirs.backend == "crowdkit"
    assert np.mean(ours.labels == theirs.labels) > 0.99
    np.testing.assert_allclose(ours.annotator_accuracy, theirs.annotator_accuracy, atol=0.02)


def test_annotator_quality_table():
    ann, true = crowd(seed=2)
    ds = dawid_skene(ann, num_classes=4, backend="builtin")
    rows = annotator_quality({f"a{k}": ann[:, k] for k in range(4)}, ds.labels, num_classes=4, ds=ds,
                             true_labels=true)
    assert [r["annotator"] for r in rows] == ["a0", "a1", "a2", "a3"]
    assert rows[3]["true_accuracy"] == pytest.approx(0.25, abs=0.04)
    assert rows[3]["agreement_with_consensus"] < 0.4 < min(r["agreement_with_consensus"] for r in rows[:3])
    assert all(r["num_labelled"] == int((ann[:, k] >= 0).sum()) for k, r in enumerate(rows))


def test_consensus_audit_flags_given_labels_that_disagree():
    ann, true = crowd(seed=3)
    given = ann[:, 3].copy()  # audit the bad annotator's column
    given[given < 0] = true[given < 0]
    issues = consensus_issues({f"a{k}": ann[:, k] for k in range(4)}, given=given, class_names=list("wxyz"),
                              true_labels=true, backend="builtin")
    wrong = given != true
    det = issues.detection_metrics()
    assert det["f1"] > 0.9
    assert issues.estimated_noise_rate == pytest.approx(wrong.mean(), abs=0.05)
    acc = issues.info["consensus_accuracy"]
    assert acc["dawid_skene"] > acc["majority_vote"]
    r = issues.records()[0]
    assert r["reason"].startswith("dawid_skene: consensus ") and "votes: a0=" in r["reason"]


CIFAR_N = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar-n" / "CIFAR-10_human.pt"


@pytest.mark.skipif(not CIFAR_N.is_file(), reason=f"CIFAR-10N label file not at {CIFAR_N}")
def test_cifar10n_three_annotators():
    # Labels only (no images): random1..3 as three annotators, scored against the clean labels.
    from noisyfit.data.cifarn import load_cifar_n_labels

    a = load_cifar_n_labels("cifar10n", CIFAR_N.parents[1])
    ann = {f"random{k}": a[f"random_label{k}"] for k in (1, 2, 3)}
    clean = a["clean_label"]
    mv = np.mean(majority_vote(ann, num_classes=10) == clean)
    ds = np.mean(dawid_skene(ann, num_classes=10, backend="builtin").labels == clean)
    assert 0.90 < mv < ds < 0.93


@pytest.mark.skipif(importlib.util.find_spec("crowdkit") is not None, reason="crowd-kit is installed here")
def test_the_crowdkit_backend_without_crowd_kit_exits_2_before_any_folder(tmp_path, capsys):
    # a labelling team's trial: an ImportError traceback, exit 1, and an empty output folder
    from noisyfit.cli import main

    out = tmp_path / "audit"
    assert main(["audit", "digits", "--annotators", "a,b", "--crowd-backend", "crowdkit", "--out", str(out)]) == 2
    assert ("--crowd-backend crowdkit needs crowd-kit, which is not installed: pip install 'noisyfit[crowd]'"
            in capsys.readouterr().err)
    assert not out.exists()


def test_annotator_columns_by_either_name_and_too_few_for_dawid_skene(tmp_path, capsys):
    # a labelling team's trial: extra_a0 was 'no label column' with a CIFAR-10N hint, "," a shape error, and one
    # annotator gave Dawid-Skene accuracies of 1.0 without a word
    from noisyfit.cli import main

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 60)
    noisy = np.where(rng.random(60) < 0.8, y, (y + 1) % 3)
    table = tmp_path / "crowd.csv"
    table.write_text("f,label,extra_a0\n" + "".join(f"{v},{g},{v}\n" for v, g in zip(y, noisy)))
    assert main(["audit", f"csv:{table}", "--annotators", "extra_a0", "--out", str(tmp_path / "a")]) == 0
    assert "Dawid-Skene with 1 annotator(s) has too little agreement" in capsys.readouterr().err
    assert main(["audit", f"csv:{table}", "--annotators", ",", "--out", str(tmp_path / "b")]) == 2
    assert "--annotators names no column" in capsys.readouterr().err
    assert main(["audit", f"csv:{table}", "--annotators", "a1", "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert "no annotator column(s) ['a1']; available: ['a0'] (a CSV's column extra_<name> is annotator <name>" in err


def test_majority_vote_keeps_a_given_label_in_a_tie_and_dawid_skene_reports_each_confusion():
    # by hand: item 0 ties 1-1 between the given 0 and 1 (kept, not flagged); item 1 has 2 votes for 2 against
    # the given 0 (flagged, suggested 2); item 2 agrees with its given label
    ann = np.array([[0, 1, -1], [2, 2, 0], [1, 1, 1]])
    issues = consensus_issues(ann, given=np.array([0, 0, 1]), method="majority_vote", class_names=list("abc"))
    assert issues.is_issue.tolist() == [False, True, False] and int(issues.suggested[1]) == 2
    # Dawid-Skene's per-annotator confusion rows are in the audit's info: a swap of two classes shows there
    ann, true = crowd(seed=3)
    ds = consensus_issues({f"a{k}": ann[:, k] for k in range(4)}, class_names=list("wxyz"), backend="builtin")
    rows = ds.info["annotators"][0]["estimated_confusion"]
    assert np.array(rows).shape == (4, 4) and np.allclose(np.sum(rows, axis=1), 1.0, atol=0.01)


def test_contested_items_kept_by_the_consensus_are_listed_for_review(tmp_path):
    # by hand (majority vote): item 0 splits 1-1-1 and item 3 ties 1-1, both keeping the given 0 (review); item 1
    # is 2 of 3 for the given label (fine); item 2 is 2 of 3 against it (flagged, never in review); item 4 agrees
    ann = np.array([[0, 1, 2], [0, 0, 1], [1, 1, 0], [0, 1, -1], [0, 0, 0]])
    issues = consensus_issues(ann, given=np.zeros(5, int), method="majority_vote", class_names=list("abc"))
    assert issues.is_issue.tolist() == [False, False, True, False, False]
    assert issues.review.tolist() == [True, False, False, True, False]
    assert [r["index"] for r in issues.records(which="review")] == [0, 3]  # vote share 1/3 before 1/2
    assert issues.reasons[0] == ("kept a (vote share 0.333), but only 1 of 3 annotators gave it; the best alternative "
                                 "b (0.333); votes: annotator0=a, annotator1=b, annotator2=c")
    # a review item's suggestion is the best other label (the 1-1 tie's other vote), flagged ones the consensus
    assert issues.suggested.tolist() == [1, 0, 1, 1, 0] and issues.suggested_confidence[3] == 0.5
    assert issues.summary()["num_review"] == 2
    issues.write_csv(tmp_path / "review.csv", which="review")
    lines = (tmp_path / "review.csv").read_text().splitlines()
    assert len(lines) == 3 and lines[1].startswith("0,0,0,a,1,b,0.333")
    from noisyfit.report.html import render_report

    page = render_report(issues)
    assert "To review: 2 contested item(s)" in page and page.count("<tr><td>", page.index("id='review-table'")) == 2
    # Dawid-Skene: the review set is exactly the unflagged items whose given label had at most half the votes
    ann, _ = crowd(seed=2)
    given = ann[:, 3].copy()
    given[given < 0] = 0
    ds = consensus_issues(ann, given=given, backend="builtin")
    counted = np.array([[np.sum(row == k) for k in range(4)] for row in ann])
    minority = counted[np.arange(len(given)), given] <= (ann >= 0).sum(axis=1) / 2
    assert ds.review.tolist() == (minority & ~ds.is_issue).tolist() and 0 < ds.review.sum() < len(given)
    with pytest.raises(ValueError, match="review marks flagged examples"):
        type(ds)(**{**ds.__dict__, "review": ds.is_issue.copy()})


def test_the_cli_writes_review_csv_beside_issues_csv(tmp_path, capsys):
    from noisyfit.cli import main

    table = tmp_path / "crowd.csv"
    rows = [(0, 0, 1, 2), (0, 0, 0, 1), (1, 1, 1, 0), (2, 2, 2, 2)] * 5  # label, three annotators
    table.write_text("f,label,extra_a,extra_b,extra_c\n" + "".join(f"{k},{g},{a},{b},{c}\n"
                                                                   for k, (g, a, b, c) in enumerate(rows)))
    out = tmp_path / "audit"
    assert main(["audit", f"csv:{table}", "--annotators", "a,b,c", "--consensus", "majority_vote",
                 "--out", str(out)]) == 0
    assert "5 item(s) kept their label although at most half of their annotators gave it" in capsys.readouterr().err
    review = (out / "review.csv").read_text().splitlines()
    assert len(review) == 6 and all(line.split(",")[0] in {"0", "4", "8", "12", "16"} for line in review[1:])
    import json

    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_review"] == 5 and summary["files"]["review"] == "review.csv"
    assert "id='review-table'" in (out / "report.html").read_text()
