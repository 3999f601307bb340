"""A run's config.yaml names its data by absolute path, so the run can be repeated or audited from any folder
(found by a new-user trial: `train --config runs/x/config.yaml` from another folder could not find
`folder:imgs`, and `audit --run` quietly dropped the report's inputs and the cleaned label file)."""

import csv

import yaml
from conftest import blobs

from noisyfit.cli import main
from noisyfit.data.sources import absolute_spec

QUICK = ["--epochs", "1", "--device", "cpu", "--precision", "fp32", "--no-progress", "model.args.hidden=[8]",
         "train.batch_size=64", "train.tensorboard=false", "train.checkpoint=false"]


def test_absolute_spec_by_hand(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "imgs").mkdir()
    assert absolute_spec("folder:imgs") == f"folder:{tmp_path / 'imgs'}"
    assert absolute_spec(" folder: imgs ") == f"folder:{tmp_path / 'imgs'}"
    assert absolute_spec("folder:/elsewhere/imgs") == "folder:/elsewhere/imgs"  # absolute: as given
    assert absolute_spec("folder:missing") == "folder:missing"  # not here (maybe in the data dir): as given
    assert absolute_spec("cifar10n-worst") == "cifar10n-worst" and absolute_spec("digits") == "digits"


def test_a_run_trained_on_a_relative_path_is_repeated_from_another_folder(tmp_path, monkeypatch, capsys):
    data, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    data.mkdir(), elsewhere.mkdir()
    x, y = blobs(n=200, d=4, c=3, seed=1)
    with open(data / "table.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["a", "b", "c", "d", "label"])
        w.writerows([*map(float, row), int(k)] for row, k in zip(x, y))
    monkeypatch.chdir(data)
    assert main(["train", "--dataset", "csv:table.csv", "--out", "runs/x", *QUICK]) == 0
    saved = yaml.safe_load((data / "runs/x/config.yaml").read_text())
    assert saved["data"]["dataset"] == f"csv:{data / 'table.csv'}"
    monkeypatch.chdir(elsewhere)
    assert main(["train", "--config", str(data / "runs/x/config.yaml"), "--out", "y", "train.seed=1"]) == 0
    assert (elsewhere / "y" / "results.json").exists()
    # data moved since: the audit of the run still stands, and says loudly what it lacks and how to name the data
    (data / "table.csv").rename(data / "moved.csv")
    capsys.readouterr()
    assert main(["audit", "--run", str(data / "runs/x"), "--out", "audit"]) == 0
    err = capsys.readouterr().err
    assert "warning: the run's data" in err and "no cleaned_labels.npz is written" in err
    assert f"noisyfit audit DATA --run {data / 'runs/x'}" in err
    assert main(["audit", f"csv:{data / 'moved.csv'}", "--run", str(data / "runs/x"), "--out", "audit2"]) == 0
    assert "warning: the run's data" not in capsys.readouterr().err and (elsewhere / "audit2/cleaned_labels.npz").exists()
