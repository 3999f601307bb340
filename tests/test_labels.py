"""Labels as users have them: any integer values or strings map to 0..C-1, the names follow every output,
and a label outside the declared classes names its row and value; one validator for class-index arrays."""

import csv
import json
import warnings

import numpy as np
import pytest

from noisyfit.cli import main
from noisyfit.data.labeled import DataError, LabeledData
from noisyfit.data.labels import DataWarning, check_labels, encode_labels
from noisyfit.data.noise import symmetric_flip
from noisyfit.data.tabular import load_csv, load_npz
from noisyfit.detect import find_label_issues
from noisyfit.detect.validation import DetectInputError

QUICK = ["--epochs", "2", "--device", "cpu", "--precision", "fp32", "--no-progress", "model.args.hidden=[16]",
         "train.batch_size=32", "train.tensorboard=false"]


def write_csv(path, labels, true=None):
    """Two features that separate the classes (by label position), then the label column(s)."""
    order = {v: k for k, v in enumerate(sorted(set(labels), key=str))}
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "f1", "f2", "label", *(["true_label"] if true is not None else [])])
        for i, v in enumerate(labels):
            k = order[v]
            w.writerow([f"s{i}", 3.0 * k + 0.1 * (i % 7), -2.0 * k, v, *([true[i]] if true is not None else [])])
    return path


# ------------------------------------------------------------------------------------ mapping
@pytest.mark.parametrize("values,names", [
    ([1, 2, 3], ["1", "2", "3"]),
    ([10, 20, 30], ["10", "20", "30"]),
    ([-1, 1, 0], ["-1", "0", "1"]),
    (["dog", "cat", "eel"], ["cat", "dog", "eel"]),
    (["2", "10", "1"], ["1", "2", "10"]),  # numbers sort as numbers, not as text
])
def test_any_label_values_map_to_indices_in_sorted_order(tmp_path, values, names):
    labels = [values[i % 3] for i in range(30)]
    train = load_csv(write_csv(tmp_path / "t.csv", labels)).train
    assert train.class_names == names
    np.testing.assert_array_equal([train.class_names[k] for k in train.labels], [str(v) for v in labels])


def test_true_labels_share_the_mapping_and_npz_values_are_mapped_too(tmp_path):
    train = load_csv(write_csv(tmp_path / "t.csv", [10, 20, 30] * 4, true=[20, 20, 30] * 4)).train
    assert train.class_names == ["10", "20", "30"]
    np.testing.assert_array_equal(train.true_labels[:3], [1, 1, 2])
    assert train.noise_rate == pytest.approx(1 / 3)
    np.savez(tmp_path / "d.npz", x=np.zeros((6, 2), np.float32), y=[5, 7, 9, 5, 7, 9], x_test=np.zeros((2, 2)),
             y_test=[9, 11])  # 11 only in the test split: still a class of the joint mapping
    splits = load_npz(tmp_path / "d.npz")
    assert splits.train.class_names == ["5", "7", "9", "11"]
    np.testing.assert_array_equal(splits.test.labels, [2, 3])


def test_a_stray_value_is_a_warning_that_names_its_line(tmp_path):
    labels = [1, 2, 3] * 20
    labels[30] = 7
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train = load_csv(write_csv(tmp_path / "t.csv", labels)).train
    assert train.class_names == ["1", "2", "3", "7"]  # not 0..7 with four empty classes
    (msg,) = [str(w.message) for w in caught if issubclass(w.category, DataWarning)]
    # data row 31 is line 32 (the header is line 1)
    assert "class '7' has only 1 row(s) (line 32 (id 's30'))" in msg and "typo" in msg


def test_declared_classes_refuse_a_label_outside_them_naming_line_and_value(tmp_path):
    labels = [1, 2, 3] * 20
    labels[30], labels[45] = 7, 0
    path = write_csv(tmp_path / "t.csv", labels)
    (tmp_path / "t.classes.txt").write_text("1\n2\n3\n")
    with pytest.raises(DataError) as err:
        load_csv(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: 2 label(s) are not one of the 3 declared classes (1, 2, 3): ")
    assert "line 32 (id 's30'): '7', line 47 (id 's45'): '0'" in msg and "t.classes.txt" in msg
    # names in the class file set the order (and the indices) of the classes
    (tmp_path / "t.classes.txt").write_text("3\n2\n1\n")
    labels[30], labels[45] = 1, 1
    train = load_csv(write_csv(tmp_path / "t.csv", labels)).train
    assert train.class_names == ["3", "2", "1"] and train.labels[0] == 2
    # integer labels with word class names are indices into them
    assert load_csv(path, class_names=["no", "yes", "maybe", "sure"]).train.class_names[3] == "sure"
    with pytest.raises(DataError, match=r"40 label\(s\) are not class indices 0\.\.1 of the 2 declared classes: "
                                        r"line 3 \(id 's1'\): '2', line 4 \(id 's2'\): '3', .* and 35 more\."):
        load_csv(path, class_names=["no", "yes"])


def test_npz_with_class_names_names_the_bad_entry_and_its_id(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((4, 2), np.float32), y=[0, 1, 3, 1], class_names=["a", "b", "c"],
             ids=["w", "x", "y", "z"])
    with pytest.raises(DataError, match=r"d.npz: y\[2\] = 3 \(id 'y'\) is outside \[0, 3\) \(1 such entry\)\. "
                                        r"class_names lists 3 classes \(a, b, c\)"):
        load_npz(tmp_path / "d.npz")


# ------------------------------------------------------------------------------------ one validator
def test_one_validator_for_data_noise_and_detection():
    bad = np.array([0, 5, 1, 2, -1])
    messages = []
    for call in (lambda: LabeledData(x=np.zeros((5, 2), np.float32), labels=bad, class_names=["a", "b", "c"]),
                 lambda: symmetric_flip(bad, 0.2, 3, seed=0),
                 lambda: find_label_issues(bad, np.full((5, 3), 1 / 3))):
        with pytest.raises(DataError) as err:
            call()
        messages.append(str(err.value))
    for m in messages:  # the same wording, only the fix differs by stage
        assert "labels[1] = 5 is outside [0, 3) (2 such entries; also labels[4] = -1)" in m
    assert "pred_probs has 3 columns" in messages[2] and isinstance(err.value, DetectInputError)
    with pytest.raises(DataError, match=r"y\[1\] is nan \(line 3\) \(1 such entry\)"):
        check_labels(np.array([0.0, np.nan]), 2, name="y", row=lambda i: f"line {i + 2}")
    with pytest.raises(DataError, match=r"y\[0\] = 0\.5 is not a whole number"):
        check_labels(np.array([0.5, 1.0]), name="y")
    with pytest.raises(DataError, match="a classifier needs at least 2 classes"):
        encode_labels({"label": ["cat"] * 4})


def test_a_damaged_noise_file_names_the_entry_and_the_file(tmp_path):
    from noisyfit.data.noise import load_noisy_labels, save_noisy_labels

    path = save_noisy_labels(tmp_path / "n.npz", symmetric_flip(np.arange(20) % 4, 0.25, 4, seed=0), "toy")
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["labels"][3] = 12
    np.savez(path, **arrays)
    with pytest.raises(DataError, match=rf"{path}: labels\[3\] = 12 is outside \[0, 4\) \(1 such entry\)\. "
                                        "Regenerate the file"):
        load_noisy_labels(path)


# ------------------------------------------------------------------------------------ end to end
def test_labels_1_to_3_train_and_audit_with_their_names_in_every_output(tmp_path, capsys):
    rng = np.random.default_rng(0)
    true = [int(v) for v in rng.choice([10, 20, 30], 120)]
    given = list(true)
    for i in range(0, 120, 12):  # 10 wrong labels, each moved to the next class
        given[i] = {10: 20, 20: 30, 30: 10}[true[i]]
    path = write_csv(tmp_path / "t.csv", given, true=true)
    run = tmp_path / "run"
    assert main(["train", "--dataset", f"csv:{path}", "--out", str(run), *QUICK]) == 0
    assert "Traceback" not in capsys.readouterr().err
    results = json.loads((run / "results.json").read_text())
    assert results["data"]["class_names"] == ["10", "20", "30"]
    with np.load(run / "per_sample.npz") as z:
        assert z["class_names"].tolist() == ["10", "20", "30"] and set(z["given"]) <= {0, 1, 2}
    # an audit of the run, and one of the file with given probabilities: names, not indices, in the outputs
    probs = np.full((120, 3), 0.05)
    probs[np.arange(120), [[10, 20, 30].index(t) for t in true]] = 0.9
    np.save(tmp_path / "p.npy", probs)
    for args in (["--run", str(run)], [f"csv:{path}", "--pred-probs", str(tmp_path / "p.npy")]):
        out = tmp_path / f"audit{len(args)}"
        assert main(["audit", *args, "--out", str(out), "--no-progress"]) == 0
        with open(out / "issues.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        assert rows and all(r["given_label"] in ("10", "20", "30") for r in rows)
        summary = json.loads((out / "summary.json").read_text())
        assert summary["class_names"] == ["10", "20", "30"]
        assert [c["name"] for c in summary["per_class"]] == ["10", "20", "30"]
        page = (out / "report.html").read_text()
        first = rows[0]
        assert (f"<td class='l given'>{first['given_label']}</td><td class='l sugg'>{first['suggested_label']}</td>"
                in page)
    assert {(r["given_label"], r["suggested_label"]) for r in rows} <= {("20", "10"), ("30", "20"), ("10", "30")}
    assert len(rows) == 10


def test_a_label_outside_declared_classes_exits_2_naming_the_row(tmp_path, capsys):
    labels = ["cat", "dog"] * 10
    labels[7] = "cta"
    path = write_csv(tmp_path / "pets.csv", labels)
    (tmp_path / "pets.classes.txt").write_text("cat\ndog\n")
    code = main(["train", "--dataset", f"csv:{path}", "--out", str(tmp_path / "r"), *QUICK])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "1 label(s) are not one of the 2 declared classes (cat, dog): line 9 (id 's7'): 'cta'" in err
    assert not (tmp_path / "r" / "results.json").exists()
