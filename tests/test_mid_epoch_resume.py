"""A run cut inside an epoch resumes from the mid-epoch checkpoint exactly as if it had never stopped.

Every built-in method takes part, with its warm-up shortened so the cut falls in the phase where its
selection state matters (GMM split and unlabelled queues, tipping point, estimated targets, ...). A
method that keeps state between steps outside its buffers must return it from ``transient_state``;
this test fails for one that does not.
"""

import time

import pytest
import torch
from conftest import tiny_cfg

from noisyfit.config import ConfigError
from noisyfit.engine.trainer import Trainer
from noisyfit.methods import list_methods
from noisyfit.testing import assert_same_run

PLR = ("method.args.kappa=1", "method.args.warmup_epochs=1", "method.args.proj_dim=16")
MIX = ("method.args.rampup_epochs=1",)
#: per method: overrides that put the cut epoch (index 2) after its warm-up
SHORT_WARMUP = {
    "ce": (), "gce": (), "sce": (), "elr": (), "pemm": (),
    "elr_plus": ("method.args.ema_step=10",),
    "car": ("method.args.es=2",),
    "coteaching": ("method.args.num_gradual=2", "optim.name=adam", "optim.lr=0.001"),
    "j_coteaching": ("method.args.num_gradual=2", "optim.name=adam", "optim.lr=0.001"),
    "jump_teaching": ("method.args.warmup_epochs=1",),
    "bkd": ("method.args.window=1", "method.args.min_epochs=1", "method.args.fallback_epoch=1"),
    "dividemix": ("method.args.warmup_epochs=1", "method.args.rampup_epochs=1"),
    "ce_plr": PLR,
    "plremix": PLR + MIX,
    "dividemix_plr": PLR + MIX,
}
CUT = (2, 4)  # after 4 of the 11 steps of epoch index 2 (720 training samples, batch 64)


def test_every_built_in_method_is_covered():
    assert set(SHORT_WARMUP) == {m for m in list_methods() if not m.startswith("_")}


@pytest.mark.parametrize("method", sorted(SHORT_WARMUP))
def test_a_run_cut_inside_an_epoch_resumes_exactly(tmp_path, blob_splits, method):
    over = (f"method.name={method}", "train.epochs=4", *SHORT_WARMUP[method])
    full = Trainer(tiny_cfg(*over), tmp_path / "a", splits=blob_splits).fit()
    cut = Trainer(tiny_cfg(*over), tmp_path / "b", splits=blob_splits)
    assert cut.fit(stop_at_step=CUT) is None
    ck = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)
    assert ck["epoch"] == CUT[0] - 1 and ck["partial"]["epoch"] == CUT[0] and ck["partial"]["step"] == CUT[1]
    resumed = Trainer(tiny_cfg(*over), tmp_path / "b", splits=blob_splits, resume=True).fit()
    assert len(resumed["epochs"]) == len(full["epochs"]) == 4
    assert resumed["epochs"][CUT[0]]["resumed_at_step"] == CUT[1]
    assert "resumed_at_step" not in resumed["epochs"][CUT[0] + 1]
    # every epoch figure and Method.health (what a method records during an epoch must survive the cut:
    # transient_state), every weight and buffer, every per-sample output: the comparison check_method makes
    compared = assert_same_run(tmp_path / "a", full, tmp_path / "b", resumed)
    assert compared["epoch_figures"] >= 4 * 3 and compared["per_sample_arrays"] >= 5


def test_mid_epoch_checkpoints_follow_the_clock_and_keep_the_epoch_time(tmp_path, blob_splits, monkeypatch):
    # A clock that advances one minute per call: every step is "due" at checkpoint_minutes=1.
    now = [1_000_000.0]

    def fake_time():
        now[0] += 60.0
        return now[0]

    saves = []
    real_save = Trainer._save_checkpoint

    def counting_save(self, epoch, partial=None):
        saves.append(None if partial is None else partial["step"])
        real_save(self, epoch, partial)

    monkeypatch.setattr(Trainer, "_save_checkpoint", counting_save)
    tr = Trainer(tiny_cfg("train.epochs=1", "train.checkpoint_minutes=1"), tmp_path / "a", splits=blob_splits)
    monkeypatch.setattr(time, "time", fake_time)
    r = tr.fit()
    monkeypatch.undo()
    # one mid-epoch save after each step but the last, then the end-of-epoch save
    assert saves == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, None]
    # the time spent writing them (one fake minute each) is wall time, not training time
    assert r["epochs"][0]["train_seconds"] <= r["compute"]["wall_seconds_total"] - 10 * 60

    saves.clear()
    monkeypatch.setattr(Trainer, "_save_checkpoint", counting_save)
    Trainer(tiny_cfg("train.epochs=1", "train.checkpoint_minutes=0"), tmp_path / "b", splits=blob_splits).fit()
    assert saves == [None]  # 0 = at epoch ends only


def test_a_checkpoint_from_before_checkpoint_minutes_existed_still_resumes(tmp_path, blob_splits):
    Trainer(tiny_cfg("train.epochs=2"), tmp_path, splits=blob_splits).fit(stop_after_epoch=1)
    ck = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    del ck["config"]["train"]["checkpoint_minutes"]
    del ck["partial"]
    torch.save(ck, tmp_path / "checkpoint.pt")
    r = Trainer(tiny_cfg("train.epochs=2", "train.checkpoint_minutes=2"), tmp_path, splits=blob_splits,
                resume=True).fit()
    assert len(r["epochs"]) == 2


def test_stopping_inside_an_epoch_without_a_run_folder_is_refused(blob_splits):
    with pytest.raises(ConfigError, match="needs a run folder"):
        Trainer(tiny_cfg(), None, splits=blob_splits).fit(stop_at_step=(0, 2))
