"""Run folders that never lose work: --out protection (--resume / --overwrite), output paths checked before
training, method.args checked before data loading, output permissions, and the audit's per-fold resume."""

import csv
import json
import os
import stat

import numpy as np
import pytest
from conftest import blobs

from noisyfit.cli import main

QUICK = ["--epochs", "1", "--device", "cpu", "--precision", "fp32", "--no-progress", "model.args.hidden=[16]",
         "train.batch_size=64", "train.tensorboard=false"]


def train(out, *flags, overrides=()):
    return main(["train", "--dataset", "digits", "--backbone", "mlp", "--out", str(out), *flags, *QUICK, *overrides])


def said(capsys):
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


@pytest.fixture
def no_training(monkeypatch):
    """Fail loudly if anything trains or loads data (the checks must come first)."""
    from noisyfit.data import sources
    from noisyfit.engine.trainer import Trainer

    def boom(*a, **k):
        raise AssertionError("trained or loaded data before the check")

    monkeypatch.setattr(Trainer, "fit", boom)
    monkeypatch.setattr(sources, "load_dataset", boom)


@pytest.fixture
def blobs_csv(tmp_path):
    x, y = blobs(n=240, d=4, c=3, seed=3)
    y[:24] = (y[:24] + 1) % 3
    path = tmp_path / "blobs.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["f0", "f1", "f2", "f3", "label"])
        w.writerows([*map(float, row), int(k)] for row, k in zip(x, y))
    return path


# ------------------------------------------------------------------------------------ train --out
def test_a_finished_run_is_not_replaced_without_overwrite(tmp_path, capsys):
    out = tmp_path / "run"
    assert train(out) == 0
    before = (out / "results.json").read_bytes()
    said(capsys)
    assert train(out, "--seed", "5") == 2
    err = said(capsys)
    assert f"--out {out} is not empty (" in err and "--resume" in err and "--overwrite" in err
    assert "nothing was changed" in err and (out / "results.json").read_bytes() == before
    # --overwrite deletes the run's own files and starts again; the user's other files stay
    (out / "notes.txt").write_text("mine")
    (out / "best_model.pt").write_bytes(b"stale")
    assert train(out, "--seed", "5", "--overwrite", overrides=["train.checkpoint=false"]) == 0
    assert json.loads((out / "results.json").read_text())["seed"] == 5
    assert (out / "notes.txt").read_text() == "mine"
    assert not (out / "best_model.pt").exists() and not (out / "checkpoint.pt").exists()
    assert train(out, "--resume", "--overwrite") == 2
    assert "--resume and --overwrite contradict each other" in said(capsys)


def test_a_killed_run_needs_resume_and_bench_bookkeeping_does_not_count(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--dataset", "digits", "--out", str(out), "--stop-after", "1", "--epochs", "2",
                 "--no-progress", "model.args.hidden=[16]", "train.tensorboard=false"]) == 0
    assert train(out) == 2 and "--resume" in said(capsys)
    assert main(["train", "--out", str(out), "--resume", "--no-progress"]) == 0
    assert len(json.loads((out / "results.json").read_text())["epochs"]) == 2
    # `noisyfit bench` writes its log into a run folder before it starts the run there
    fresh = tmp_path / "bench-run"
    fresh.mkdir()
    (fresh / "bench.log").write_text("$ noisyfit train ...\n")
    (fresh / ".hidden").write_text("")
    assert train(fresh) == 0


@pytest.mark.parametrize("command", ["train", "audit"])
def test_out_that_is_a_file_or_cannot_be_written_exits_2_before_anything_runs(tmp_path, capsys, no_training,
                                                                               command):
    a_file = tmp_path / "report.txt"
    a_file.write_text("keep me")
    args = ["digits", "--folds", "2", *QUICK] if command == "audit" else ["--dataset", "digits", *QUICK]
    assert main([command, *args, "--out", str(a_file)]) == 2
    assert f"--out {a_file} is a file, not a folder" in said(capsys) and a_file.read_text() == "keep me"
    assert main([command, *args, "--out", str(a_file / "sub")]) == 2
    assert f"--out {a_file / 'sub'}: cannot write there" in said(capsys)


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into a read-only folder")
def test_read_only_out_exits_2(tmp_path, capsys, no_training):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        assert main(["audit", "digits", "--out", str(ro / "audit"), *QUICK]) == 2
        assert "cannot write there" in said(capsys)
    finally:
        ro.chmod(0o700)


# ------------------------------------------------------------------------------------ method.args
@pytest.mark.parametrize("args,message", [
    (["--method", "gce", "method.args.q=abc"], "method.args.q: 'abc' is not a valid float"),
    (["--method", "gce", "method.args.qq=0.5"], "method.args of method 'gce': no hyper-parameter 'qq'"),
    (["--method", "car", "method.args.lam=high"], "method.args.lam: 'high' is not a valid float | None"),
    (["--method", "car", "method.args.variant=cod"], "method.args of method 'car': variant must be one of ('code', 'recon'), got 'cod'"),
    # values out of their ranges (a new-user trial: q=5 and lam=-1 crashed after loading the data, ELR's beta=5
    # trained to 7% accuracy with exit 0)
    (["--method", "gce", "method.args.q=5"], "q=5.0 is outside its allowed range (0, 1]"),
    (["--method", "car", "method.args.lam=-1"], "lam=-1 is outside its allowed range [0, inf)"),
    (["--method", "elr", "method.args.beta=5"], "beta=5.0 is outside its allowed range [0, 1)"),
    (["--method", "sce", "method.args.alpha=-1"], "alpha=-1.0 is outside its allowed range [0, inf)"),
])
def test_bad_method_args_exit_2_in_one_paragraph_before_data_loading(tmp_path, capsys, no_training, args, message):
    assert main(["train", "--dataset", "digits", "--out", str(tmp_path / "r"), *args]) == 2
    err = said(capsys)
    assert message in err and "Its hyper-parameters (with defaults) are: " in err
    assert err.count("\n") == 1  # one paragraph, one line
    assert not (tmp_path / "r").exists()  # nothing written: the folder is still free for the corrected command
    assert main(["audit", "digits", "--out", str(tmp_path / "a"), *args]) == 2  # --method in an audit
    assert message in said(capsys)


def test_bad_method_args_of_the_out_of_fold_method(tmp_path, capsys, no_training):
    assert main(["audit", "digits", "--oof-method", "sce", "--out", str(tmp_path / "a"), "method.args.alpha=x"]) == 2
    assert "method.args.alpha: 'x' is not a valid float" in said(capsys)


# ------------------------------------------------------------------------------------ permissions
@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_outputs_have_the_permissions_of_config_yaml(tmp_path, umask):
    old = os.umask(umask)
    try:
        out = tmp_path / "run"
        assert train(out) == 0
    finally:
        os.umask(old)
    mode = stat.S_IMODE((out / "config.yaml").stat().st_mode)
    assert mode == 0o666 & ~umask
    for name in ("results.json", "per_sample.npz", "checkpoint.pt", "best_model.pt", "metrics.jsonl"):
        assert stat.S_IMODE((out / name).stat().st_mode) == mode, name
    assert not list(out.glob(".*.tmp"))


# ------------------------------------------------------------------------------------ audit folds
def test_a_killed_audit_resumes_at_the_fold_in_progress(tmp_path, capsys, monkeypatch, blobs_csv):
    from noisyfit.engine.trainer import Trainer

    fit = Trainer.fit
    calls = []

    def counted(self, *a, **k):
        calls.append(1)
        if killed_at and len(calls) == killed_at:
            raise KeyboardInterrupt  # Ctrl-C (or a kill) during the third fold
        return fit(self, *a, **k)

    monkeypatch.setattr(Trainer, "fit", counted)
    def audit(out):
        return ["audit", f"csv:{blobs_csv}", "--folds", "3", "--epochs", "2", "--out", str(out), "--device", "cpu",
                "--precision", "fp32", "model.args.hidden=[16]", "train.batch_size=64"]

    out = tmp_path / "audit"
    args = audit(out)
    killed_at = 3
    assert main(args) == 130
    log = said(capsys)
    # off a terminal the audit says what it does, fold by fold and epoch by epoch
    assert "noisyfit audit: out-of-fold: fold 1/3: training on 160 examples for 2 epochs" in log
    assert "noisyfit audit: out-of-fold: fold 1/3 epoch 2/2: loss " in log
    assert "noisyfit audit: out-of-fold: fold 2/3 done in " in log
    assert sorted(p.name for p in (out / "folds").iterdir()) == ["fold0.npz", "fold1.npz"]
    assert not (out / "issues.csv").exists()
    assert main(args) == 2 and "--resume" in said(capsys)  # the folds are work: not silently replaced
    calls.clear()
    killed_at = None
    assert main([*args, "--resume"]) == 0
    log = said(capsys)
    assert len(calls) == 1  # only the fold that was cut short trains again
    assert "fold 1/3 loaded from" in log and "fold 2/3 loaded from" in log and "fold 3/3: training on" in log
    summary = json.loads((out / "summary.json").read_text())
    assert [f.get("cached", False) for f in summary["out_of_fold"]["per_fold"]] == [True, True, False]
    resumed = np.load(out / "pred_probs.npy")
    # the same audit in one go gives the same probabilities (CPU training is deterministic)
    again = tmp_path / "again"
    assert main(audit(again)) == 0
    np.testing.assert_allclose(np.load(again / "pred_probs.npy"), resumed, atol=1e-6)
    # --overwrite starts over: every fold trains again
    calls.clear()
    assert main([*args, "--overwrite"]) == 0 and len(calls) == 3


def test_audit_with_a_method_resumes_its_run(tmp_path, capsys, monkeypatch, blobs_csv):
    from noisyfit.engine.trainer import Trainer

    fit = Trainer.fit
    monkeypatch.setattr(Trainer, "fit", lambda self, **k: fit(self, stop_after_epoch=1))  # as if killed
    out = tmp_path / "audit"
    args = ["audit", f"csv:{blobs_csv}", "--method", "ce", "--epochs", "2", "--out", str(out), "--device", "cpu",
            "--precision", "fp32", "--no-progress", "model.args.hidden=[16]", "train.batch_size=64"]
    assert main(args) == 2
    assert "has not finished" in said(capsys) and (out / "run" / "checkpoint.pt").is_file()
    monkeypatch.setattr(Trainer, "fit", fit)
    assert main([*args, "--resume"]) == 0
    assert "resumed from" in said(capsys)
    results = json.loads((out / "run" / "results.json").read_text())
    assert [e["epoch"] for e in results["epochs"]] == [0, 1] and len(results["compute"]["sessions"]) == 2
    assert json.loads((out / "summary.json").read_text())["num_examples"] == 240


# ------------------------------------------------------------------------------------ values out of range
@pytest.mark.parametrize("args,message", [
    (["optim.lr=-1"], "optim.lr=-1.0 is outside its allowed range (0, inf)"),
    (["optim.momentum=-3"], "optim.momentum=-3.0 is outside its allowed range [0, 1)"),
    (["optim.weight_decay=-1"], "optim.weight_decay=-1.0 is outside its allowed range [0, inf)"),
    (["train.batch_size=0"], "train.batch_size=0 is outside its allowed range [1, inf)"),
    (["--epochs", "0"], "train.epochs=0 is outside its allowed range [1, inf)"),
    (["--epochs", "-1", "optim.lr=0"], "train.epochs=-1 is outside its allowed range [1, inf); "
                                       "optim.lr=0.0 is outside its allowed range (0, inf)"),
    # names and specs too: these were only caught after the data had loaded
    (["--backbone", "nosuch"], "unknown backbone 'nosuch'; choose one of"),
    (["--noise", "sym:1.5"], "sym: noise rate 1.5 is outside [0, 1)"),
])
@pytest.mark.parametrize("command", ["train", "audit"])
def test_settings_out_of_range_exit_2_before_data_loading(tmp_path, capsys, no_training, args, message, command):
    # found by a new-user trial: these reached torch as tracebacks (exit 1), and --epochs 0 "trained" a random
    # model with exit 0 that predict then used
    head = ["train", "--dataset", "digits"] if command == "train" else ["audit", "digits"]
    assert main([*head, "--out", str(tmp_path / "r"), *args]) == 2
    errors = [line for line in said(capsys).splitlines() if "error:" in line]  # audit says its detector first
    assert len(errors) == 1 and all(part in errors[0] for part in message.split("; "))


def test_a_run_stopped_before_its_first_checkpoint_is_restarted_with_overwrite(tmp_path, capsys):
    # what a crash before the first epoch leaves behind; --resume used to send the user back to the refusal
    out = tmp_path / "run"
    (out / "tensorboard").mkdir(parents=True)
    (out / "config.yaml").write_text("method: {name: ce}\n")
    assert train(out) == 2
    err = said(capsys)
    assert "stopped before its first checkpoint" in err and "--overwrite" in err and "--resume" not in err
    assert train(out, "--resume") == 2
    err = said(capsys)
    assert "holds no run to resume" in err and "--overwrite instead of --resume" in err
    assert train(out, "--overwrite") == 0 and (out / "results.json").exists()
    # a finished run without checkpoints (train.checkpoint=false) is a finished run, not a stopped one
    assert train(tmp_path / "done", overrides=["train.checkpoint=false"]) == 0
    assert train(tmp_path / "done") == 2 and "is not empty" in said(capsys)


def test_model_args_for_another_backbone_exit_2_with_the_fix(tmp_path, capsys):
    # a researcher's trial: a CNN preset on feature rows, then its widths on mlp, were tracebacks (exit 1)
    assert main(["train", "--dataset", "digits", "--config", "elr/cpu-cifar10n", "--out", str(tmp_path / "a"),
                 "--epochs", "1"]) == 2
    assert "backbone 'fastcnn' needs image input" in said(capsys)
    assert main(["train", "--dataset", "digits", "--config", "elr/cpu-cifar10n", "--backbone", "mlp", "--out",
                 str(tmp_path / "b"), "--epochs", "1"]) == 2
    err = said(capsys)
    assert "backbone 'mlp' has no option(s) ['widths']" in err and "'model.args={hidden: [64]}' for mlp" in err


def test_another_methods_preset_says_how_to_reset_its_arguments(tmp_path, capsys, no_training):
    # a researcher's trial: --config elr/cpu-cifar10n --method gce kept ELR's beta and lam
    assert main(["train", "--dataset", "digits", "--config", "elr/cpu-cifar10n", "--method", "gce", "--out",
                 str(tmp_path / "r")]) == 2
    err = said(capsys)
    assert "no hyper-parameter 'beta', 'lam'" in err and "reset its arguments: 'method.args={}'" in err
    # the advice works: the reset arguments pass the check
    from noisyfit.commands.preflight import check_method_args
    from noisyfit.config import load_config

    check_method_args(load_config("elr/cpu-cifar10n", ["method.name=gce", "method.args={}"]))
