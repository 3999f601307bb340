"""Acting on an audit: the cleaned label file (relabel / drop), its keep mask, and `noisyfit train` on it."""

import json

import numpy as np
import pytest

from noisyfit.cli import main
from noisyfit.config import load_config
from noisyfit.data.labeled import DataError, LabeledData
from noisyfit.data.noise import apply_noise, load_noisy_labels, save_noisy_labels
from noisyfit.data.sources import load_dataset
from noisyfit.detect.clean import clean_labels
from noisyfit.detect.issues import LabelIssues
from noisyfit.engine.run_data import prepare_run_data

#          row:  0  1  2  3  4  5
GIVEN = np.array([0, 1, 2, 0, 1, 2])
TRUE = np.array([0, 0, 1, 0, 2, 0])


def _issues(confidence=(0.9, 0.4, 0.7, 0.5, 0.8)):
    """An audit of rows 1-5 (row 0 not audited, as a run's validation row): 1, 2, 3, 4 flagged.

    Row 1 suggests 0 at 0.9, row 2 suggests 0 at 0.4, row 3 suggests its own label 0 at 0.7, row 4
    suggests 2 at 0.5; row 5 (truly 0) is missed.
    """
    return LabelIssues(is_issue=[True, True, True, True, False], given=GIVEN[1:], suggested=[0, 0, 0, 2, 2],
                       scores=[0.1, 0.2, 0.3, 0.4, 0.9], reasons={}, class_names=["a", "b", "c"], detector="test",
                       rule="r", score_name="s", index=[1, 2, 3, 4, 5], true_labels=TRUE[1:],
                       suggested_confidence=None if confidence is None else [*confidence])


def _labelled():
    return LabeledData(np.zeros((6, 2), np.float32), GIVEN.copy(), ["a", "b", "c"], true_labels=TRUE.copy(),
                       name="toy")


def test_relabel_or_drop_relabels_at_or_above_the_threshold_and_drops_below():
    c = clean_labels(_issues(), _labelled(), action="relabel-or-drop", threshold=0.5)
    np.testing.assert_array_equal(c.result.labels, [0, 0, 2, 0, 2, 2])
    np.testing.assert_array_equal(c.result.keep, [True, True, False, True, True, True])
    assert c.relabelled.tolist() == [1, 4] and c.dropped.tolist() == [2] and c.unchanged.tolist() == [3]
    # kept rows 0, 1, 3, 4, 5: only row 5 (missed by the audit) is still wrong
    assert c.result.noise_rate == pytest.approx(1 / 5)
    np.testing.assert_allclose(c.result.realised_transition, [[0.75, 0, 0.25], [0, 0, 0], [0, 0, 1]])
    np.testing.assert_allclose(c.result.transition, [[0.75, 0, 0.25], [0, 1, 0], [0, 0, 1]])  # class b: none kept
    np.testing.assert_array_equal(c.result.true_labels, TRUE)  # what the loader checks the file against
    assert c.result.spec == "audit-clean:relabel-or-drop@0.5"
    s = c.summary()
    assert (s["relabelled"], s["dropped"], s["unchanged"], s["kept"]) == (2, 1, 1, 5)
    assert s["relabelled_correct"] == 1.0 and s["noise_rate_after"] == pytest.approx(0.2)
    # the default threshold is 0.5; at 0.95 every flagged row is below it, so all four are dropped
    assert clean_labels(_issues(), _labelled()).dropped.tolist() == [2]
    assert clean_labels(_issues(), _labelled(), threshold=0.95).dropped.tolist() == [1, 2, 3, 4]


def test_plain_label_arrays_clean_as_a_data_set_does():
    # from Python the labels are an array, not a LabeledData (a new user got an AttributeError)
    from noisyfit.detect import clean_labels as exported

    by_array = exported(_issues(), GIVEN.copy(), threshold=0.5)
    by_data = clean_labels(_issues(), _labelled(), threshold=0.5)
    np.testing.assert_array_equal(by_array.labels, by_data.result.labels)
    np.testing.assert_array_equal(by_array.keep, [True, True, False, True, True, True])
    assert by_array.relabelled.tolist() == [1, 4] and by_array.dropped.tolist() == [2]
    assert by_array.result.info["labels_known"] is False  # an array has no truth to report against
    assert clean_labels(_issues(), GIVEN.copy(), action="relabel").keep.all()  # nothing dropped: all True
    with pytest.raises(DataError, match="1-D array of class indices"):
        clean_labels(_issues(), np.array(["a", "b", "c", "a", "b", "c"]))


def test_relabel_and_drop_act_on_every_flagged_example():
    c = clean_labels(_issues(), _labelled(), action="relabel")
    np.testing.assert_array_equal(c.result.labels, [0, 0, 0, 0, 2, 2])
    assert c.result.keep is None and c.relabelled.tolist() == [1, 2, 4]
    assert c.result.noise_rate == pytest.approx(2 / 6)  # row 2 (truly 1) relabelled 0, row 5 missed
    assert c.result.spec == "audit-clean:relabel"
    c = clean_labels(_issues(confidence=None), _labelled(), action="drop")  # needs no confidence
    np.testing.assert_array_equal(c.result.labels, GIVEN)
    np.testing.assert_array_equal(c.result.keep, [True, False, False, False, False, True])
    assert c.result.noise_rate == pytest.approx(1 / 2)
    # rows an earlier cleaned file dropped stay dropped
    c = clean_labels(_issues(), _labelled(), keep=np.array([False, True, True, True, True, True]))
    np.testing.assert_array_equal(c.result.keep, [False, True, False, True, True, True])


def test_clean_errors_name_the_problem():
    with pytest.raises(DataError, match="a threshold applies to relabel-or-drop only; relabel acts on every"):
        clean_labels(_issues(), _labelled(), action="relabel", threshold=0.8)
    with pytest.raises(DataError, match=r"threshold 1.5: .* in \[0, 1\]"):
        clean_labels(_issues(), _labelled(), threshold=1.5)
    with pytest.raises(DataError, match="test gives no probability for its suggested labels.*relabel or drop"):
        clean_labels(_issues(confidence=None), _labelled())
    other = _labelled()
    other.labels[3] = 2
    with pytest.raises(DataError, match=r"differ from the data set's at 1 rows \(first: row 3\)"):
        clean_labels(_issues(), other)


def test_the_keep_mask_round_trips_through_the_noise_file(tmp_path):
    c = clean_labels(_issues(), _labelled())
    path = save_noisy_labels(tmp_path / "cleaned.npz", c.result, "toy")
    back = load_noisy_labels(path, num_examples=6, num_classes=3)
    np.testing.assert_array_equal(back.keep, c.result.keep)
    np.testing.assert_array_equal(back.labels, c.result.labels)
    assert back.spec == c.result.spec and back.info["action"] == "relabel-or-drop"
    with np.load(path) as z:
        bad = {k: z[k] for k in z.files}
    bad["keep"] = np.ones(6, dtype=np.int64)
    np.savez(tmp_path / "bad.npz", **bad)
    with pytest.raises(DataError, match="'keep' must be 6 booleans"):
        load_noisy_labels(tmp_path / "bad.npz")


def test_a_run_drops_rows_after_its_split_so_the_rest_split_as_before(tmp_path, blob_splits):
    train = blob_splits.train
    n = len(train)
    flagged = np.arange(0, 100)
    issues = LabelIssues(is_issue=np.isin(np.arange(n), flagged), given=train.labels, suggested=(train.labels + 1) % 3,
                         scores=np.ones(n), reasons={}, class_names=train.class_names, detector="t", rule="r",
                         score_name="s", suggested_confidence=np.where(np.arange(n) % 2 == 0, 0.9, 0.1))
    cleaned = clean_labels(issues, train)  # even rows of 0-99 relabelled, odd ones dropped
    path = save_noisy_labels(tmp_path / "cleaned.npz", cleaned.result, "blobs")
    cfg = load_config(None, ["data.val_fraction=0.1"]).data
    plain = prepare_run_data(cfg, 0, blob_splits)
    cfg.noisy_labels_file = str(path)
    run = prepare_run_data(cfg, 0, blob_splits)
    keep = cleaned.result.keep
    np.testing.assert_array_equal(run.train_index, plain.train_index[keep[plain.train_index]])
    np.testing.assert_array_equal(run.val_index, plain.val_index[keep[plain.val_index]])
    assert len(run.train_index) + len(run.val_index) == n - 50
    np.testing.assert_array_equal(run.train.labels, cleaned.result.labels[run.train_index])
    assert run.noise_info["dropped"] == 50 and run.noise_info["spec"] == "audit-clean:relabel-or-drop@0.5"


def test_a_cleaned_file_of_data_without_a_truth_gives_a_run_no_truth(tmp_path):
    # the user's own data: the audit's reference labels are the given ones, not a truth, so a run on the
    # cleaned file must not report a "true" noise rate or detection scores against them
    from noisyfit.data.labeled import DatasetSplits

    x = np.random.default_rng(0).normal(size=(9, 2)).astype(np.float32)
    own = LabeledData(x, np.r_[GIVEN, 0, 1, 2], ["a", "b", "c"], name="own")  # no true_labels
    issues = _issues()
    issues.true_labels = None
    cleaned = clean_labels(issues, own)
    assert cleaned.result.info["labels_known"] is False
    path = save_noisy_labels(tmp_path / "cleaned.npz", cleaned.result, "own")
    cfg = load_config(None, ["data.val_fraction=0", f"data.noisy_labels_file={path}"]).data
    run = prepare_run_data(cfg, 0, DatasetSplits(own))
    assert run.train.true_labels is None
    np.testing.assert_array_equal(run.train.labels, cleaned.result.labels[run.train_index])
    # the same rows with a true_label column since: the file fits them (checked against the given labels, not
    # refused as other data, a user trial) and the run scores against that truth
    graded = LabeledData(x, np.r_[GIVEN, 0, 1, 2], ["a", "b", "c"], true_labels=np.r_[TRUE, 0, 1, 2], name="own")
    run = prepare_run_data(cfg, 0, DatasetSplits(graded))
    np.testing.assert_array_equal(run.train.labels, cleaned.result.labels[run.train_index])
    np.testing.assert_array_equal(run.train.true_labels, np.r_[TRUE, 0, 1, 2][run.train_index])
    # other given labels than the audit's: refused, saying which labels differ
    relabelled = LabeledData(x, np.r_[TRUE, 0, 1, 2], ["a", "b", "c"], name="own")
    with pytest.raises(DataError, match="the labels the audit was given differ from the data's given labels"):
        prepare_run_data(cfg, 0, DatasetSplits(relabelled))
    # a file made from data with a truth keeps it
    truth = LabeledData(x, np.r_[GIVEN, 0, 1, 2], ["a", "b", "c"], true_labels=np.r_[TRUE, 0, 1, 2], name="toy")
    known = clean_labels(_issues(), truth)
    path = save_noisy_labels(tmp_path / "known.npz", known.result, "toy")
    cfg.noisy_labels_file = str(path)
    np.testing.assert_array_equal(prepare_run_data(cfg, 0, DatasetSplits(truth)).train.true_labels,
                                  np.r_[TRUE, 0, 1, 2][known.result.keep])


# ---------------------------------------------------------------------------------- the CLI, end to end
TRAIN_FLAGS = ["--epochs", "2", "--device", "cpu", "--precision", "fp32", "--no-progress", "model.args.hidden=[32]",
               "train.batch_size=64", "train.tensorboard=false"]


def _planted_digits_audit(tmp_path):
    """digits with sym:0.3 noise (seed 3) and pred_probs that know the clean labels: 0.91 on the true
    class, but only 0.85 on every other planted row, so a threshold of 0.88 relabels half and drops half."""
    source = load_dataset("digits").train
    noisy, _ = apply_noise(source, "sym:0.3", seed=3)
    planted = np.flatnonzero(noisy.labels != source.labels)
    n = len(source)
    top = np.full(n, 0.91)
    top[planted[1::2]] = 0.85
    probs = np.repeat(((1 - top) / 9)[:, None], 10, axis=1)
    probs[np.arange(n), source.labels] = top
    np.save(tmp_path / "p.npy", probs)
    return source, noisy, planted


def test_cleaned_label_file_round_trips_into_train(tmp_path, capsys):
    source, noisy, planted = _planted_digits_audit(tmp_path)
    out = tmp_path / "audit"
    assert main(["audit", "digits", "--noise", "sym:0.3", "--seed", "3", "--pred-probs", str(tmp_path / "p.npy"),
                 "--clean-threshold", "0.88", "--out", str(out), "--no-progress"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["detection"]["precision"] == 1.0 and summary["detection"]["recall"] == 1.0
    cl = summary["cleaned_labels"]
    relabelled, dropped = planted[0::2], planted[1::2]
    assert (cl["relabelled"], cl["dropped"], cl["unchanged"]) == (len(relabelled), len(dropped), 0)
    assert cl["relabelled_correct"] == 1.0 and cl["noise_rate_after"] == 0.0
    assert summary["files"]["cleaned_labels"] == "cleaned_labels.npz"
    assert f"{len(relabelled)} relabelled, {len(dropped)} dropped" in capsys.readouterr().err
    header = (out / "issues.csv").read_text().splitlines()[0]
    assert header == "index,id,given,given_label,suggested,suggested_label,suggested_confidence,score,reason"

    run = tmp_path / "run"
    capsys.readouterr()
    assert main(["train", "--dataset", "digits", "--noisy-labels", str(out / "cleaned_labels.npz"), "--out", str(run),
                 *TRAIN_FLAGS]) == 0
    # its validation split's labels are the audit's relabels too: said (a user read 94.7% there as accuracy)
    said = capsys.readouterr()
    assert "labels come from an audit's cleaned file, the validation split's too" in " ".join(
        (said.out + said.err).split())
    results = json.loads((run / "results.json").read_text())
    data = results["data"]
    # every kept label is the true one: relabelled to it, or never wrong; the dropped rows are gone
    assert data["train_noise_rate"] == 0.0 and data["noise"]["dropped"] == len(dropped)
    assert data["num_train"] + data["num_val"] == len(source) - len(dropped)
    with np.load(run / "per_sample.npz") as ps:
        rows, given = ps["train_index"], ps["given"]
    assert not np.isin(dropped, rows).any()
    np.testing.assert_array_equal(given, source.labels[rows])
    assert np.isin(relabelled, rows).sum() > 0.8 * len(relabelled)  # those not held out for validation

    # auditing that run: the rows its label file dropped stay dropped in the next cleaned file
    again = tmp_path / "again"
    assert main(["audit", "--run", str(run), "--clean", "drop", "--out", str(again), "--no-progress"]) == 0
    keep = load_noisy_labels(again / "cleaned_labels.npz").keep
    assert not keep[dropped].any()
    flagged_rows = [int(r.split(",")[0]) for r in (again / "issues.csv").read_text().splitlines()[1:]]
    assert (~keep).sum() == len(dropped) + len(flagged_rows)


def test_the_retraining_hint_names_the_label_column_the_audit_read(tmp_path, capsys):
    # a reviewer's check: `audit --run` on a CSV run trained with --label-column printed a train command that
    # failed ("no label column 'label'"); the column comes from the run's config there, from the flags otherwise
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 60)
    table = tmp_path / "my table.csv"
    table.write_text("a,b,kind\n" + "".join(f"{v + rng.normal():.3f},{rng.normal():.3f},{v}\n" for v in y))
    run = tmp_path / "run"
    assert main(["train", "--dataset", f"csv:{table}", "--label-column", "kind", "--out", str(run), *TRAIN_FLAGS]) == 0
    capsys.readouterr()
    assert main(["audit", "--run", str(run), "--clean", "relabel", "--out", str(tmp_path / "a"), "--no-progress"]) == 0
    said = capsys.readouterr()
    hint = next(line for line in (said.out + said.err).splitlines() if "train on it with" in line)
    assert f"--dataset 'csv:{table}' --noisy-labels" in hint and hint.endswith(" --label-column kind`")


@pytest.mark.parametrize("args, message", [
    (["--clean", "relabel", "--clean-threshold", "0.8"], "a threshold applies to relabel-or-drop only"),
    (["--clean-threshold", "80"], "threshold 80.0: it is a probability of the suggested label, in [0, 1]."),
    (["--feature-image", "8by8"], "--feature-image '8by8': use auto, off, HxW"),
])
def test_bad_clean_and_report_options_exit_2_in_one_line(tmp_path, capsys, args, message):
    _planted_digits_audit(tmp_path)
    out = tmp_path / "audit"
    assert main(["audit", "digits", "--pred-probs", str(tmp_path / "p.npy"), "--out", str(out), "--no-progress",
                 *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("noisyfit audit: error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (out / "summary.json").exists()  # refused before the audit ran


def test_a_file_that_drops_rows_is_refused_where_every_row_is_audited(tmp_path, capsys):
    _planted_digits_audit(tmp_path)
    out = tmp_path / "audit"
    assert main(["audit", "digits", "--noise", "sym:0.3", "--seed", "3", "--pred-probs", str(tmp_path / "p.npy"),
                 "--clean", "drop", "--out", str(out), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["audit", "digits", "--noisy-labels", str(out / "cleaned_labels.npz"), "--pred-probs",
                 str(tmp_path / "p.npy"), "--out", str(tmp_path / "second"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "cleaned_labels.npz drops 404 examples, but this audit reads every row of DATA in order" in err
    assert err.count("\n") == 1
