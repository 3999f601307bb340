"""Issues from a finished run (the method's own signal) and out-of-fold pred_probs from K-fold training."""

import json

import numpy as np
import pytest
from conftest import blobs, tiny_cfg

from noisyfit.data.labeled import DatasetSplits, LabeledData
from noisyfit.data.noise import symmetric_flip
from noisyfit.detect import DetectInputError, find_label_issues, issues_from_run, out_of_fold
from noisyfit.detect.from_run import rule_threshold


def _fake_run(path, *, flags, scores, suggested, given, true=None, rule="p(given label) < 0.5", probs=None,
              train_index=None, extra_method=None, extra=None):
    path.mkdir(parents=True)
    n = len(given)
    ps = {"train_index": np.arange(n) * 2 if train_index is None else train_index, "val_index": np.array([1]),
          "given": given, "clean_score": scores, "flag": flags, "suggested": suggested}
    if true is not None:
        ps["true"] = true
    if probs is not None:
        ps["probs"] = probs
    ps.update(extra or {})
    np.savez(path / "per_sample.npz", **ps)
    method = {"name": "gmm-thing", "hyper": {}, "flag_rule": rule, **(extra_method or {})}
    (path / "results.json").write_text(json.dumps({
        "schema": "noisyfit.results/1", "method": method, "seed": 0, "final": {"test_acc": 0.9},
        "data": {"class_names": ["a", "b", "c"], "num_classes": 3, "num_val": 1, "source": "toy"},
        "config": {"data": {"dataset": "digits"}}}))
    return path


def test_issues_from_a_hand_made_run(tmp_path):
    given = np.array([0, 1, 2, 0, 1, 2])
    scores = np.array([0.9, 0.2, 0.8, 0.1, 0.7, 0.45])
    flags = scores < 0.5
    suggested = np.array([0, 2, 2, 1, 1, 0])
    true = np.array([0, 2, 2, 1, 1, 2])
    run = _fake_run(tmp_path / "run", flags=flags, scores=scores, suggested=suggested, given=given, true=true,
                    extra={"otsu_group": np.array([1, 4, 1, 4, 2, 4])})
    issues = issues_from_run(run)
    np.testing.assert_array_equal(issues.is_issue, flags)
    np.testing.assert_array_equal(issues.index, np.arange(6) * 2)  # positions in the source set
    assert issues.threshold == 0.5  # the number in the rule, which separates the scores as the flags do
    recs = issues.records()
    assert [r["index"] for r in recs] == [6, 2, 10]  # lowest clean score first
    # the method's extra per-sample column (e.g. BKD's group) is part of the reason
    assert recs[0]["reason"] == "gmm-thing: p(given label) < 0.5 -- clean score 0.100; suggests b; otsu_group = 4"
    # joint of the method's decisions: flagged -> suggested, others -> given; noise rate = flag rate
    assert issues.noise.noise_rate == pytest.approx(0.5)
    # (given, guessed true): (0,0) (1,2) (2,2) (0,1) (1,1) (2,0); rows true: P(given | true)
    expected_t = np.array([[1 / 2, 0, 1 / 2], [1 / 2, 1 / 2, 0], [0, 1 / 2, 1 / 2]])
    np.testing.assert_allclose(issues.noise.transition, expected_t)
    det = issues.detection_metrics()
    assert det["precision"] == pytest.approx(2 / 3) and det["recall"] == pytest.approx(1.0)


def test_the_methods_own_noise_estimate_wins(tmp_path):
    given = np.array([0, 1, 2, 0])
    run = _fake_run(tmp_path / "run", flags=np.array([1, 0, 0, 0], bool), scores=np.array([0.1, .9, .9, .9]),
                    suggested=given, given=given, extra_method={"estimated_noise_rate": 0.31})
    assert issues_from_run(run).estimated_noise_rate == 0.31


def test_rule_threshold_only_when_flags_are_a_cut_on_the_score():
    s = np.array([0.1, 0.3, 0.6, 0.9])
    assert rule_threshold("clean posterior < 0.5", s, s < 0.5) == 0.5
    assert rule_threshold("BKD group G4: p(given label) < mu_low = 0.32 (Otsu)", s, s < 0.5) == 0.32
    assert rule_threshold("Otsu group", s, s < 0.5) == pytest.approx(0.45)  # midpoint of the gap
    assert rule_threshold("code mismatch", s, np.array([1, 0, 1, 0], bool)) is None


def test_missing_run_files_say_how_to_finish_the_run(tmp_path):
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "results.json").write_text("{}")
    with pytest.raises(DetectInputError, match=r"per_sample.npz not found: the run has not finished.*--resume"):
        issues_from_run(tmp_path / "half")
    with pytest.raises(DetectInputError, match=r"run folder .* not found"):
        issues_from_run(tmp_path / "nowhere")


def test_issues_from_a_real_training_run(tmp_path, blob_splits):
    from noisyfit.engine.trainer import Trainer

    cfg = tiny_cfg("train.epochs=4", "train.checkpoint=false")
    Trainer(cfg, tmp_path / "run", splits=blob_splits).fit()
    issues = issues_from_run(tmp_path / "run")
    with np.load(tmp_path / "run" / "per_sample.npz") as z:
        np.testing.assert_array_equal(issues.is_issue, z["flag"])
        np.testing.assert_array_equal(issues.index, z["train_index"])
        np.testing.assert_allclose(issues.scores, z["clean_score"])
    assert issues.detector == "noisyfit method ce" and issues.threshold == 0.5
    recorded = json.loads((tmp_path / "run" / "results.json").read_text())["method"]["estimated_noise_rate"]
    assert recorded == pytest.approx(issues.is_issue.mean()) and issues.estimated_noise_rate == recorded
    det = issues.detection_metrics()
    assert det["true_noise_rate"] == pytest.approx(0.3, abs=0.03)
    assert det["auroc"] > 0.8  # CE's p(given label) on blobs with 30% symmetric noise
    assert all(r["reason"].startswith("ce: p(given label) < 0.5 -- clean score ") for r in issues.records())


def test_out_of_fold_predictions_find_planted_noise():
    x, true = blobs(n=600, d=8, c=3, seed=4)
    names = ["a", "b", "c"]
    clean = LabeledData(x, true, names, name="blobs")
    noisy = clean.with_labels(symmetric_flip(true, 0.2, 3, seed=0).labels)
    cfg = tiny_cfg("data.noise=null", "train.epochs=6")
    oof = out_of_fold(cfg, DatasetSplits(noisy), folds=3, progress=False)
    n = len(noisy)
    assert oof.pred_probs.shape == (n, 3) and oof.pred_probs.dtype == np.float32
    np.testing.assert_allclose(oof.pred_probs.sum(axis=1), 1.0, atol=1e-5)
    # every example is held out exactly once, folds stratified by the given label
    assert set(np.unique(oof.fold)) == {0, 1, 2}
    for k in range(3):
        counts = np.bincount(oof.labels[oof.fold == k], minlength=3)
        assert np.all(np.abs(counts - np.bincount(oof.labels) / 3) <= 1)
    np.testing.assert_array_equal(oof.labels, noisy.labels)
    np.testing.assert_array_equal(oof.index, np.arange(n))
    assert np.mean(oof.pred_probs.argmax(1) == true) > 0.9  # the fold models learn the true classes
    flags = find_label_issues(oof.labels, oof.pred_probs)
    wrong = oof.labels != true
    f1 = 2 * np.sum(flags & wrong) / (flags.sum() + wrong.sum())
    assert f1 > 0.8
    assert len(oof.info["per_fold"]) == 3 and oof.info["epochs"] == 6


def test_out_of_fold_resumes_from_finished_folds_and_ignores_another_setup(tmp_path, monkeypatch):
    import noisyfit.engine.trainer as trainer_mod

    x, true = blobs(n=300, d=8, c=3, seed=6)
    splits = DatasetSplits(LabeledData(x, true, ["a", "b", "c"], name="blobs"))
    cfg = tiny_cfg("data.noise=null", "train.epochs=2")
    lines = []
    first = out_of_fold(cfg, splits, folds=3, progress=False, cache_dir=tmp_path, log=lines.append)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fold0.npz", "fold1.npz", "fold2.npz"]
    assert sum("done in" in line for line in lines) == 3
    # a "killed" run lost its last fold: only that fold trains again; the others come from the cache
    (tmp_path / "fold2.npz").unlink()
    fits = []
    real_fit = trainer_mod.Trainer.fit
    monkeypatch.setattr(trainer_mod.Trainer, "fit", lambda self, *a, **k: fits.append(1) or real_fit(self, *a, **k))
    lines.clear()
    again = out_of_fold(cfg, splits, folds=3, progress=False, cache_dir=tmp_path, log=lines.append)
    assert len(fits) == 1 and sum("loaded from" in line for line in lines) == 2
    held0 = again.fold == 0
    np.testing.assert_array_equal(again.pred_probs[held0], first.pred_probs[held0])
    assert [f.get("cached", False) for f in again.info["per_fold"]] == [True, True, False]
    # another budget is another setup: nothing is reused
    fits.clear()
    out_of_fold(tiny_cfg("data.noise=null", "train.epochs=1"), splits, folds=3, progress=False, cache_dir=tmp_path)
    assert len(fits) == 3


def test_out_of_fold_applies_the_configured_noise_once():
    x, true = blobs(n=300, d=8, c=3, seed=5)
    cfg = tiny_cfg("data.noise=sym:0.3", "train.epochs=1")
    oof = out_of_fold(cfg, DatasetSplits(LabeledData(x, true, ["a", "b", "c"])), folds=2, progress=False)
    assert np.mean(oof.labels != oof.true_labels) == pytest.approx(0.3, abs=0.01)
    assert oof.info["noise"]["spec"] == "sym:0.3"


def test_a_fold_cached_before_an_option_existed_is_reused_unless_the_option_is_set(tmp_path, monkeypatch):
    # Adding an option (whose default keeps the old behaviour) once threw away three finished 44-minute
    # folds of a bench run: the cached fingerprint lacked the new key. It compares as a resume does now.
    import json

    import noisyfit.engine.trainer as trainer_mod

    x, true = blobs(n=240, d=8, c=3, seed=7)
    splits = DatasetSplits(LabeledData(x, true, ["a", "b", "c"], name="blobs"))
    cfg = tiny_cfg("data.noise=null", "train.epochs=1")
    out_of_fold(cfg, splits, folds=2, progress=False, cache_dir=tmp_path)
    for path in tmp_path.glob("fold*.npz"):  # as an older noisyfit wrote them: no train.crop_pad key
        with np.load(path) as z:
            saved = {k: z[k] for k in z.files}
        fp = json.loads(str(saved["fingerprint"]))
        del fp["config"]["train"]["crop_pad"]
        saved["fingerprint"] = json.dumps(fp, sort_keys=True)
        np.savez(path, **saved)
    fits = []
    real_fit = trainer_mod.Trainer.fit
    monkeypatch.setattr(trainer_mod.Trainer, "fit", lambda self, *a, **k: fits.append(1) or real_fit(self, *a, **k))
    lines = []
    out_of_fold(cfg, splits, folds=2, progress=False, cache_dir=tmp_path, log=lines.append)
    assert fits == [] and sum("loaded from" in line for line in lines) == 2
    # the same key set away from its default is another setup: both folds train again
    out_of_fold(tiny_cfg("data.noise=null", "train.epochs=1", "train.crop_pad=2"), splits, folds=2,
                progress=False, cache_dir=tmp_path, log=lines.append)
    assert len(fits) == 2 and sum("another setup" in line for line in lines) == 2
