"""A table's columns are matched by name from training to prediction: a user trial's new rows with their columns
in another order were predicted at 33% instead of 74%, exit 0, because only the column count was checked."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from noisyfit.cli import main


@pytest.fixture(scope="module")
def table_run(tmp_path_factory):
    """A run trained on a CSV of 3 well-separated classes with 4 named features (one of them pure noise)."""
    root = tmp_path_factory.mktemp("table")
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 240)
    x = np.c_[3.0 * y, -2.0 * y, rng.normal(size=240), y * 1.5] + rng.normal(0, 0.3, (240, 4))
    frame = pd.DataFrame(x, columns=["height", "width", "noise", "depth"])
    frame.assign(kind=np.array(["a", "b", "c"])[y]).to_csv(root / "train.csv", index=False)
    assert main(["train", "--dataset", f"csv:{root / 'train.csv'}", "--label-column", "kind", "--epochs", "8",
                 "--batch-size", "16", "--out", str(root / "run"), "model.args.hidden=[16]",
                 "train.tensorboard=false", "data.val_fraction=0"]) == 0
    return root, frame, y


def test_new_rows_are_matched_to_the_training_columns_by_name(table_run, capsys):
    root, frame, y = table_run
    frame.to_csv(root / "new.csv", index=False)
    # shuffled, with an id and an annotator's column: neither is a feature (the loader's rule)
    frame[["depth", "noise", "height", "width"]].assign(id=[f"r{i}" for i in range(len(frame))], extra_ann="a").to_csv(
        root / "shuffled.csv", index=False)
    capsys.readouterr()
    assert main(["predict", str(root / "run"), str(root / "new.csv"), "--out", str(root / "p1.csv")]) == 0
    assert main(["predict", str(root / "run"), str(root / "shuffled.csv"), "--out", str(root / "p2.csv")]) == 0
    out = capsys.readouterr().out
    assert "shuffled.csv: its columns are in another order than the training table's: matched by name" in out
    first, second = pd.read_csv(root / "p1.csv"), pd.read_csv(root / "p2.csv")
    assert (first["predicted"] == np.array(["a", "b", "c"])[y]).mean() > 0.9  # the run learned the table
    assert second['id'].tolist() == [f'r{i}' for i in range(len(frame))]  # the file's ids are carried
    pd.testing.assert_frame_equal(first.drop(columns='id'), second.drop(columns='id'))
    # a renamed or missing column is an error naming it, not a prediction from the wrong column
    frame.rename(columns={"depth": "Depth"}).to_csv(root / "renamed.csv", index=False)
    assert main(["predict", str(root / "run"), str(root / "renamed.csv")]) == 2
    err = capsys.readouterr().err
    assert ("renamed.csv: the columns do not match the training table's 4 feature columns (height, width, noise, "
            "depth): missing ['depth']; not among them ['Depth']. Give the same columns (in any order; they are "
            "matched by name).") in err


def test_a_data_frame_is_matched_by_name_in_python(table_run):
    from noisyfit.predictor import PredictorError, load_predictor

    root, frame, _ = table_run
    model = load_predictor(root / "run")
    assert model.feature_names == ["height", "width", "noise", "depth"]
    np.testing.assert_array_equal(model.predict(frame[["noise", "depth", "width", "height"]]),
                                  model.predict(frame.to_numpy()))
    with pytest.raises(PredictorError, match=r"missing \['noise'\]\. Give the same columns"):
        model.predict(frame.drop(columns=["noise"]))
    # a training-style table as pandas reads it: spaces around names, its id, label and annotator columns
    table = frame.rename(columns={"width": " width"}).assign(id="r", label="a", extra_ann="b")
    np.testing.assert_array_equal(model.predict(table), model.predict(frame.to_numpy()))
    with pytest.raises(PredictorError, match=r"not among them \['kind'\]"):  # the label column by its own name
        model.predict(frame.assign(kind="a"))
    # an array has no names: read by position, as a table of the training names in that order would be
    swapped = frame.to_numpy()[:, [3, 2, 1, 0]]
    by_position = model.predict(swapped)
    np.testing.assert_array_equal(by_position, model.predict(pd.DataFrame(swapped, columns=frame.columns)))
    assert (by_position != model.predict(frame.to_numpy())).any()  # so the order mattered
    # a file's path or a single row: what to do instead (were 'an array of shape []' and '[4]')
    with pytest.raises(PredictorError, match=r"got a path \(new.csv\); this model takes feature rows of 4 values.*"
                                             r"pandas.read_csv\(path\)"):
        model.predict("new.csv")
    with pytest.raises(PredictorError, match=r"got an array of shape \[4\].*\(one row\? pass x.reshape\(1, -1\)\)"):
        model.predict(frame.to_numpy()[0])


def test_the_estimators_saved_model_keeps_its_data_frames_names(table_run, tmp_path):
    from noisyfit.estimator import NoisyClassifier
    from noisyfit.predictor import load_predictor

    _, frame, y = table_run
    clf = NoisyClassifier(epochs=2, random_state=0, backbone_args={"hidden": [8]}).fit(frame, y)
    clf.predictor_.save(tmp_path / "model.pt")
    assert load_predictor(tmp_path / "model.pt").feature_names == ["height", "width", "noise", "depth"]
    assert NoisyClassifier(epochs=2, random_state=0, backbone_args={"hidden": [8]}).fit(
        frame.to_numpy(), y).predictor_.feature_names is None
