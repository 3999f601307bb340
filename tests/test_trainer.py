import json
import os

import numpy as np
import pytest
import torch

from conftest import tiny_cfg, tiny_images
from noisyfit.config import ConfigError
from noisyfit.data.labeled import DataError, DatasetSplits
from noisyfit.engine.trainer import OutputDirError, Trainer, TrainingError
from noisyfit.methods.base import Method, register_method
from noisyfit.models.backbones import UnknownNameError


def test_ce_learns_blobs_and_scores_noisy_labels_low(blob_splits):
    r = Trainer(tiny_cfg("train.epochs=15"), None, splits=blob_splits).fit()
    assert r["final"]["test_acc"] > 0.9  # 30% symmetric noise on well separated blobs
    det = r["detection"]
    assert det["true_noise_rate"] == pytest.approx(0.3, abs=0.03)
    assert det["auroc"] > 0.9  # p(given label) separates wrong labels from right ones
    assert det["f1"] > 0.8


def test_selected_epoch_is_the_best_noisy_validation_epoch(blob_splits):
    r = Trainer(tiny_cfg("train.epochs=6"), None, splits=blob_splits).fit()
    vals = [e["val_acc"] for e in r["epochs"]]
    assert r["selected"]["epoch"] == int(np.argmax(vals))
    assert r["selected"]["test_acc"] == r["epochs"][int(np.argmax(vals))]["test_acc"]


def test_outputs_written_and_schema(tmp_path, blob_splits):
    out = tmp_path / "run"
    Trainer(tiny_cfg(), out, splits=blob_splits).fit()
    for f in ("config.yaml", "metrics.jsonl", "checkpoint.pt", "results.json", "per_sample.npz", "best_model.pt"):
        assert (out / f).exists(), f
    r = json.loads((out / "results.json").read_text())
    assert r["schema"] == "noisyfit.results/1"
    for key in ("command", "commit", "machine", "seed", "config", "epochs", "final", "selected", "detection",
                "compute", "data", "method"):
        assert key in r
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 3
    # how much of the machine others took while each epoch ran (Linux; an epoch shorter than the
    # kernel's 10 ms clock tick has no reading)
    shares = [e["others_cpu_share"] for e in r["epochs"] if "others_cpu_share" in e]
    assert all(0.0 <= v <= 1.0 for v in shares)
    if shares:
        assert r["compute"]["others_cpu_share_median"] == pytest.approx(float(np.median(shares)))
    else:
        assert "others_cpu_share_median" not in r["compute"]
    ps = np.load(out / "per_sample.npz")
    n = r["data"]["num_train"]
    assert ps["clean_score"].shape == (n,) and ps["flag"].dtype == bool and ps["probs"].shape == (n, 3)
    # train and validation indices partition the source training set
    assert len(np.intersect1d(ps["train_index"], ps["val_index"])) == 0
    assert len(ps["train_index"]) + len(ps["val_index"]) == 800


def test_resume_continues_exactly_as_an_uninterrupted_run(tmp_path):
    splits = DatasetSplits(tiny_images(128), tiny_images(64, seed=1))
    over = ("model.backbone=fastcnn", "model.args.widths=[8,16,16]", "model.args.stem_width=8",
            "train.epochs=4", "train.batch_size=32", "data.noise=sym:0.2")
    full = Trainer(tiny_cfg(*over), tmp_path / "a", splits=splits).fit()
    first = Trainer(tiny_cfg(*over), tmp_path / "b", splits=splits)
    assert first.fit(stop_after_epoch=2) is None
    assert not (tmp_path / "b" / "results.json").exists()
    resumed = Trainer(tiny_cfg(*over), tmp_path / "b", splits=splits, resume=True).fit()
    assert len(resumed["epochs"]) == len(full["epochs"])  # zip would hide a short run
    for a, b in zip(full["epochs"], resumed["epochs"]):
        assert a["train_loss"] == b["train_loss"] and a["test_acc"] == b["test_acc"]
    wa = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=False)["method"]
    wb = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)["method"]
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    pa, pb = np.load(tmp_path / "a" / "per_sample.npz"), np.load(tmp_path / "b" / "per_sample.npz")
    assert np.array_equal(pa["clean_score"], pb["clean_score"])
    # the resumed run's compute record covers both sessions
    assert len(resumed["compute"]["sessions"]) == 2 and "sessions" not in full["compute"]
    assert resumed["compute"]["wall_seconds_total"] >= resumed["compute"]["train_seconds_total"] > 0


def test_resume_with_a_different_config_is_refused(tmp_path, blob_splits):
    Trainer(tiny_cfg("train.epochs=2"), tmp_path, splits=blob_splits).fit(stop_after_epoch=1)
    with pytest.raises(ConfigError, match="optim.lr"):
        Trainer(tiny_cfg("train.epochs=2", "optim.lr=0.5"), tmp_path, splits=blob_splits, resume=True)


@register_method("_nan_for_test")
class _NaNMethod(Method):
    def __init__(self, hyper, num_classes, num_samples, make_backbone):
        super().__init__(hyper, num_classes, num_samples, make_backbone)
        self.net = make_backbone()

    def training_step(self, batch, epoch):
        return {"loss": self.net(batch.x).sum() * float("nan")}

    def predict_logits(self, x):
        return self.net(x)


def test_nan_loss_stops_with_advice_and_no_results_file(tmp_path, blob_splits):
    with pytest.raises(TrainingError, match="loss is nan at epoch 1, step 1.*Lower optim.lr"):
        Trainer(tiny_cfg("method.name=_nan_for_test"), tmp_path, splits=blob_splits).fit()
    assert not (tmp_path / "results.json").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_output_folder_non_root(tmp_path, blob_splits):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    with pytest.raises(OutputDirError, match="Choose a writable folder"):
        Trainer(tiny_cfg(), ro / "run", splits=blob_splits)


def test_output_folder_that_is_a_file(tmp_path, blob_splits):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(OutputDirError, match=f"cannot write to the output folder {f}"):
        Trainer(tiny_cfg(), f, splits=blob_splits)


def test_unknown_names_list_valid_choices(blob_splits):
    with pytest.raises(UnknownNameError, match="unknown method 'nope'; choose one of .*ce"):
        Trainer(tiny_cfg("method.name=nope"), None, splits=blob_splits)
    with pytest.raises(UnknownNameError, match="unknown backbone 'resnet9000'.*fastcnn"):
        Trainer(tiny_cfg("model.backbone=resnet9000"), None, splits=blob_splits)
    with pytest.raises(ValueError, match="unknown hyper-parameter.*'qq'.*valid: \\['q'\\]"):
        Trainer(tiny_cfg("method.name=gce", "method.args.qq=1"), None, splits=blob_splits)


def test_image_backbone_on_feature_rows_is_refused(blob_splits):
    with pytest.raises(ValueError, match="needs image input"):
        Trainer(tiny_cfg("model.backbone=fastcnn"), None, splits=blob_splits)


def test_noise_and_noise_file_together_refused(blob_splits):
    with pytest.raises(DataError, match="keep one of them"):
        Trainer(tiny_cfg("data.noisy_labels_file=x.npz"), None, splits=blob_splits)


@pytest.mark.parametrize("method", ["ce", "gce", "sce"])
def test_baselines_run_on_images_with_bf16(method):
    splits = DatasetSplits(tiny_images(64), tiny_images(32, seed=1))
    dtypes = {}
    for precision in ("bf16", "fp32"):
        tr = Trainer(tiny_cfg(f"method.name={method}", "model.backbone=fastcnn", "model.args.widths=[8,8,8]",
                              f"train.precision={precision}", "train.epochs=1", "train.batch_size=32"),
                     None, splits=splits)
        seen = dtypes[precision] = set()
        tr.method.net.register_forward_hook(lambda mod, i, out, seen=seen: seen.add((mod.training, out.dtype)))
        r = tr.fit()
        assert r["compute"]["precision"] == precision and np.isfinite(r["epochs"][0]["train_loss"])
    # the setting reaches the network: bf16 logits in the training steps under bf16, float32 under fp32
    assert (True, torch.bfloat16) in dtypes["bf16"]
    assert {d for _, d in dtypes["fp32"]} == {torch.float32}


def test_track_fit_and_health_are_recorded_against_the_truth(blob_splits, monkeypatch):
    from noisyfit.methods.ce import CrossEntropy as CE

    calls = []

    def health(self, epoch):  # a stand-in mechanism: selects the first 100 training samples
        calls.append(epoch)
        mask = np.zeros(self.num_samples, bool)
        mask[:100] = True
        return {"selected": mask, "epoch_seen": epoch}

    monkeypatch.setattr(CE, "health", health)
    t = Trainer(tiny_cfg("train.track_fit=true"), splits=blob_splits)
    res = t.fit()
    tr = t.data.train
    noisy = tr.labels != tr.true_labels
    pred = t.method.final_probs.argmax(1).numpy()  # eval pass after the last epoch = the last epoch's model
    last = res["epochs"][-1]
    assert calls == [0, 1, 2]
    assert last["fit_given"] == pytest.approx(np.mean(pred == tr.labels))
    assert last["memorised"] == pytest.approx(np.mean(pred[noisy] == tr.labels[noisy]))
    assert last["fit_clean"] == pytest.approx(np.mean(pred[~noisy] == tr.labels[~noisy]))
    assert last["health"]["selected_share"] == pytest.approx(100 / len(tr))
    assert last["health"]["selected_precision"] == pytest.approx(1 - noisy[:100].mean())
    assert last["health"]["epoch_seen"] == 2.0
    assert "fit_given" not in Trainer(tiny_cfg(), splits=blob_splits).fit()["epochs"][-1]


def test_a_crowded_cpu_is_reported_once_with_the_thread_count_that_fits(blob_splits, monkeypatch, capsys):
    import noisyfit.engine.trainer as trainer_mod

    # every epoch "sees" others taking 60% of 2 CPUs while the run uses 2 threads
    monkeypatch.setattr(trainer_mod.OthersCpuMeter, "share", lambda self: 0.6)
    monkeypatch.setattr(trainer_mod, "usable_cpus", lambda: 2)
    monkeypatch.setattr(trainer_mod.torch, "get_num_threads", lambda: 2)
    Trainer(tiny_cfg("train.epochs=3"), None, splits=blob_splits).fit()
    out = capsys.readouterr().err  # the run's console is stderr
    assert out.count("other processes used 60% of the CPU time") == 1  # once, not every epoch
    assert "train.threads=1" in out
    monkeypatch.setattr(trainer_mod.OthersCpuMeter, "share", lambda self: 0.05)
    Trainer(tiny_cfg("train.epochs=2"), None, splits=blob_splits).fit()
    assert "other processes used" not in capsys.readouterr().err


def test_a_validation_split_too_small_to_choose_an_epoch_on_is_said(blob_splits, capsys):
    # 800 rows at the default 5%: 40 validation examples, 2.5 points each
    Trainer(tiny_cfg("train.epochs=1"), None, splits=blob_splits).fit()
    err = capsys.readouterr().err
    assert "the validation split has only 40 examples (data.val_fraction=0.05)" in err
    assert "moves its accuracy by 2.5 points" in err and "data.val_fraction=0.2" in err
    for quiet in ("data.val_fraction=0.07", "data.val_fraction=0"):  # 56 examples; none
        Trainer(tiny_cfg("train.epochs=1", quiet), None, splits=blob_splits).fit()
        assert "validation split has only" not in capsys.readouterr().err


def test_a_first_epoch_far_above_a_uniform_guess_is_called_unstable(blob_splits, capsys, monkeypatch):
    import noisyfit.engine.trainer as trainer_mod
    from noisyfit.engine.trainer import unstable_loss_warning

    cfg = tiny_cfg("optim.lr=0.1")
    # a new user's fastcnn on 4 classes: 7.124 in its first epoch against ln 4 = 1.386
    msg = unstable_loss_warning({"train_loss": 7.124}, cfg, 4)
    assert "7.12, is 5.1x that of a uniform guess (ln 4 = 1.39)" in msg
    assert "optim.lr=0.1 with sgd, no warm-up" in msg and "try --lr 0.01" in msg
    assert unstable_loss_warning({"train_loss": 4.1}, cfg, 4) is None  # below 3 x 1.386 = 4.16
    assert unstable_loss_warning({"train_loss": 7.1}, tiny_cfg("method.name=elr"), 4) is None  # other losses
    assert "triangle schedule's ramp" in unstable_loss_warning({"train_loss": 9.0}, tiny_cfg("optim.schedule=triangle"), 4)
    monkeypatch.setattr(trainer_mod, "UNSTABLE_LOSS_FACTOR", 0.01)  # any CE epoch is "unstable": said once
    Trainer(tiny_cfg("train.epochs=2", "data.val_fraction=0"), None, splits=blob_splits).fit()
    assert capsys.readouterr().err.count("the steps overshoot") == 1


def test_a_model_near_chance_or_flagging_most_labels_is_said_at_the_end(blob_splits, capsys):
    from noisyfit.engine.trainer import weak_model_warning

    cfg = tiny_cfg("optim.lr=0.1", "method.name=gce")
    ten = {"data": {"num_classes": 10}}
    # a new user's GCE on 600 digit images: 12.5% validation accuracy for 10 classes, 100% estimated noise
    msg = weak_model_warning({**ten, "selected": {"epoch": 3, "val_acc": 0.125}, "method": {"estimated_noise_rate": 1.0}}, cfg)
    assert "its validation accuracy, 12.5%, is near chance (10.0% for 10 classes)" in msg
    assert "its method (gce) estimates 100% of the labels wrong" in msg
    assert "--lr 0.01; now 0.1" in msg
    # the threshold by hand: chance + 0.1 x (1 - chance) = 0.19 for 10 classes, 0.55 for 2
    assert weak_model_warning({**ten, "selected": {"epoch": 3, "test_acc": 0.189}}, cfg) is not None
    assert weak_model_warning({**ten, "selected": {"epoch": 3, "test_acc": 0.191}}, cfg) is None
    two = {"data": {"num_classes": 2}}
    assert weak_model_warning({**two, "final": {"val_acc": 0.54}}, cfg) is not None
    assert weak_model_warning({**two, "final": {"val_acc": 0.56}}, cfg) is None
    # the selected epoch's test accuracy wins over its validation accuracy (the noisy one)
    assert weak_model_warning({**ten, "selected": {"epoch": 3, "test_acc": 0.9, "val_acc": 0.15}}, cfg) is None
    # many flags alone are the audit's and NoisyClassifier's to say, not the trainer's
    assert weak_model_warning({**ten, "selected": {"epoch": 3, "test_acc": 0.9}, "method": {"estimated_noise_rate": 0.9}}, cfg) is None
    # without a hold-out nothing is selected: the placeholder -1 is not an accuracy (every such run was called
    # near chance at -100%, a user trial); the last epoch's test accuracy then decides
    unselected = {"epoch": None, "val_acc": -1.0, "test_acc": None}
    assert weak_model_warning({**ten, "selected": unselected, "final": {"val_acc": None, "test_acc": None}}, cfg) is None
    assert weak_model_warning({**ten, "selected": unselected, "final": {"val_acc": None, "test_acc": 0.9}}, cfg) is None
    assert weak_model_warning({**ten, "selected": unselected, "final": {"val_acc": None, "test_acc": 0.15}},
                              cfg) is not None
    # said once by a finished run near chance (its test labels shifted by one class: the blobs are easy enough
    # that even a 1e-9 learning rate scored 85% on the true ones), without a hold-out...
    shifted = DatasetSplits(blob_splits.train, blob_splits.test.with_labels((blob_splits.test.labels + 1) % 3))
    Trainer(tiny_cfg("train.epochs=1", "optim.lr=1e-9", "data.val_fraction=0"), None, splits=shifted).fit()
    assert capsys.readouterr().err.count("the model learned little: its test accuracy") == 1
    # ... and not by the same run on the true test labels (before the fix: 'validation accuracy, -100.0%')
    Trainer(tiny_cfg("train.epochs=1", "optim.lr=1e-9", "data.val_fraction=0"), None, splits=blob_splits).fit()
    assert "the model learned little" not in capsys.readouterr().err


def test_results_name_the_commit_the_run_started_from(monkeypatch, blob_splits):
    import noisyfit.engine.results as results

    t = Trainer(tiny_cfg(), None, splits=blob_splits)
    t.session_commit = "abc123"  # the code checked out when the run started
    monkeypatch.setattr(results, "git_commit", lambda: "def456")  # a commit made while it trained
    r = t.fit()
    assert r["commit"] == "abc123" and r["commit_at_end"] == "def456"
    # a resumed run names its first session's code; each session keeps its own
    t2 = Trainer(tiny_cfg(), None, splits=blob_splits)
    t2.sessions = [{"command": ["noisyfit"], "started": "earlier", "commit": "0ld"}]
    monkeypatch.setattr(results, "git_commit", lambda: t2.session_commit)
    r2 = t2.fit()
    assert r2["commit"] == "0ld" and r2["commit_at_end"] == t2.session_commit
    assert [s["commit"] for s in r2["compute"]["sessions"]] == ["0ld", t2.session_commit]
