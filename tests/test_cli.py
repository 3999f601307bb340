import json

import numpy as np
import pytest

from noisyfit import __version__
from noisyfit.cli import main

QUICK = ["--backbone", "mlp", "--epochs", "2", "--no-progress", "train.tensorboard=false", "model.args.hidden=[32]"]


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and __version__ in capsys.readouterr().out


def test_noise_file_then_train_on_it(tmp_path, capsys):
    f = tmp_path / "labels.npz"
    assert main(["noise", "--dataset", "digits", "--spec", "pairflip:0.3", "--seed", "1", "--out", str(f)]) == 0
    assert "drawn from digits/train's given labels, realised noise rate 0.2999" in capsys.readouterr().out
    z = np.load(f)
    assert abs(float(z["noise_rate"]) - 0.3) < 0.01
    out = tmp_path / "run"
    assert main(["train", "--dataset", "digits", "--noisy-labels", str(f), "--method", "sce", "--out", str(out),
                 *QUICK]) == 0
    r = json.loads((out / "results.json").read_text())
    assert r["method"]["name"] == "sce" and r["data"]["noise"]["spec"] == "pairflip:0.3"
    # the training split's rate is the file's, up to the held-out validation rows
    assert abs(r["data"]["train_noise_rate"] - 0.3) < 0.03
    assert r["config"]["train"]["epochs"] == 2 and len(r["epochs"]) == 2


def test_stop_and_resume_from_the_command_line(tmp_path):
    out = tmp_path / "run"
    args = ["train", "--dataset", "digits", "--noise", "sym:0.2", "--out", str(out), *QUICK]
    assert main([*args, "--stop-after", "1"]) == 0
    assert (out / "checkpoint.pt").exists() and not (out / "results.json").exists()
    assert main(["train", "--out", str(out), "--resume", "--no-progress"]) == 0
    r = json.loads((out / "results.json").read_text())
    assert [e["epoch"] for e in r["epochs"]] == [0, 1]


@pytest.mark.parametrize("args,message", [
    (["train", "--dataset", "imagenet22k"], "unknown dataset"),
    (["train", "--dataset", "digits", "--method", "magic"], "unknown method 'magic'"),
    (["train", "--dataset", "digits", "--backbone", "vit"], "unknown backbone 'vit'"),
    (["train", "--dataset", "digits", "--noise", "sym:1.5"], "sym"),
    (["train", "--dataset", "csv:/nonexistent/data.csv"], "/nonexistent/data.csv"),
    (["train", "--dataset", "digits", "train.epochz=3"], "unknown key 'train.epochz'"),
    (["train", "--dataset", "digits", "--resume"], "checkpoint"),
])
def test_user_errors_exit_2_with_a_message(tmp_path, capsys, args, message):
    code = main([*args, "--out", str(tmp_path / "r"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "r" / "results.json").exists()


def test_label_file_for_another_dataset_is_refused(tmp_path, capsys):
    f = tmp_path / "labels.npz"
    from noisyfit.data.noise import save_noisy_labels, symmetric_flip

    save_noisy_labels(f, symmetric_flip(np.zeros(10, int), 0.2, 10, seed=0), "other")
    code = main(["train", "--dataset", "digits", "--noisy-labels", str(f), "--out", str(tmp_path / "r"),
                 "--no-progress"])
    assert code == 2 and "10 labels" in capsys.readouterr().err


def test_demo_prints_the_table(capsys):
    assert main(["demo", "--methods", "ce,gce"]) == 0
    out = capsys.readouterr().out
    assert "digits, 40% symmetric noise" in out and "gce" in out and "F1" in out


def test_bench_threads_below_one_exits_2_with_a_message(tmp_path, capsys):
    code = main(["bench", "--suite", "smoke", "--threads", "0", "--out", str(tmp_path / "results"),
                 "--runs", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert code == 2 and "--threads 0" in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()  # refused before anything ran


def test_the_command_line_parser_is_built_without_torch():
    # `noisyfit --help` took 4 s when building the parser imported torch (through the embedder options)
    import subprocess
    import sys

    from noisyfit.commands.embed_options import CLASSIFIER_CHOICES
    from noisyfit.detect.crossfit import CLASSIFIERS

    assert tuple(CLASSIFIER_CHOICES) == tuple(CLASSIFIERS)
    code = "import sys; from noisyfit.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_off_a_terminal_the_epoch_lines_come_without_blank_lines_between(tmp_path, capsys):
    # a live progress bar in a log file left an empty line before every epoch line
    assert main(["train", "--dataset", "digits", "--epochs", "3", "--out", str(tmp_path / "r"),
                 "model.args.hidden=[16]", "train.tensorboard=false"]) == 0
    lines = capsys.readouterr().err.splitlines()
    epochs = [i for i, line in enumerate(lines) if line.startswith("epoch ")]
    assert len(epochs) == 3 and epochs == list(range(epochs[0], epochs[0] + 3))
    assert all(line.strip() for line in lines[:epochs[0]])
    # and before the first epoch (minutes away on CIFAR), what is loading and then what will train
    assert lines[0] == "noisyfit train: loading digits ..."
    assert any(line.startswith("data: ") and "training" in line and "ce on mlp, 3 epochs, cpu" in line
               for line in lines[:epochs[0]])


def test_summary_puts_finished_runs_side_by_side(tmp_path, capsys):
    for method in ("ce", "gce"):
        assert main(["train", "--dataset", "digits", "--method", method, "--epochs", "2", "--out",
                     str(tmp_path / "r" / method), "model.args.hidden=[16]", "train.tensorboard=false"]) == 0
    (tmp_path / "empty").mkdir()
    (tmp_path / "other").mkdir()  # another tool's results.json had crashed the table with a KeyError
    (tmp_path / "other" / "results.json").write_text('{"accuracy": 0.9}')
    capsys.readouterr()
    assert main(["summary", str(tmp_path / "r" / "ce"), str(tmp_path / "r" / "gce"), str(tmp_path / "empty"),
                 str(tmp_path / "other")]) == 0
    out, err = capsys.readouterr()
    rows = [line for line in out.splitlines() if line.startswith("│")]
    assert [r.split("│")[1].strip() for r in rows[:2]] == ["ce · r/ce", "gce · r/gce"]
    assert "note:" not in out  # the two runs differ in their method only
    assert f"skipped {tmp_path / 'empty'}: not a run folder" in err
    assert f"skipped {tmp_path / 'other'}: results.json is not a run's results" in err
    assert main(["summary", str(tmp_path / "empty")]) == 2
    assert "no finished run among" in capsys.readouterr().err
    # --plot: the per-epoch curves, the numbers of results.json (a researcher plotted them by hand)
    png = tmp_path / "curves.png"
    assert main(["summary", str(tmp_path / "r" / "ce"), str(tmp_path / "r" / "gce"), "--plot", str(png)]) == 0
    assert "curves.png: per-epoch test_acc, val_acc, train_loss of 2 run(s)" in capsys.readouterr().out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_summary_of_runs_without_test_split_or_truth_shows_what_they_have(capsys):
    # a user's folder without a test split and without true labels: the table was all dashes
    from noisyfit.commands.summary import print_summary

    def run(val_last, val_sel, est, test=None, det=None):
        return {"final": {"test_acc": test, "val_acc": val_last}, "selected": {"test_acc": test, "val_acc": val_sel},
                "method": {"estimated_noise_rate": est}, "detection": det, "compute": {"seconds_per_epoch": 2.0}}

    print_summary([("gce", run(0.55, 0.6, 0.123)), ("ce", run(0.5, 0.5, None))])
    out = capsys.readouterr().out
    assert "val acc last" in out and "noise est." in out and " P " not in out and "AUROC" not in out
    rows = [[c.strip() for c in line.split("│")[1:-1]] for line in out.splitlines() if line.startswith("│")]
    assert rows == [["gce", "55.00", "60.00", "12.3%", "2"], ["ce", "50.00", "50.00", "–", "2"]]
    assert "(no test split; its labels are as noisy as the training labels)" in " ".join(out.split())
    # with a test split and the truth: test accuracies and the flag quality, as before
    det = {"precision": 0.5, "recall": 0.25, "f1": 1 / 3, "auroc": 0.9, "estimated_noise_rate": 0.2,
           "true_noise_rate": 0.4}
    print_summary([("ce", run(0.5, 0.5, 0.2, test=0.8, det=det))])
    rows = [[c.strip() for c in line.split("│")[1:-1]] for line in capsys.readouterr().out.splitlines()
            if line.startswith("│")]
    assert rows == [["ce", "80.00", "80.00", "50.00", "25.00", "33.33", "90.00", "20.0% / 40.0%", "2"]]


def test_summary_says_what_besides_the_method_differs_between_runs():
    # a researcher put a 10-epoch run beside a 12-epoch one, and runs on two label sets, with nothing said
    from noisyfit.commands.summary import setting_differences
    from noisyfit.config import Config

    def run(method="ce", seed=0, cpu="AMD EPYC", source="cifar10n-worst/train", **changes):
        cfg = Config().to_dict()
        cfg["method"] = {"name": method, "args": {"q": 0.7} if method == "gce" else {}}
        cfg["train"]["seed"] = seed
        for key, value in changes.items():
            sec, name = key.split("__")
            cfg[sec][name] = value
        return {"config": cfg, "data": {"source": source, "num_train": 100, "num_test": 50, "num_classes": 10},
                "machine": {"cpu": cpu, "cpu_count": 2, "torch_threads": 2}, "compute": {"device": "cpu"}}

    # the method and its arguments, and where the files were kept, are not differences
    assert setting_differences([("ce", run()), ("gce", run("gce", train__tensorboard=False,
                                                            train__checkpoint_minutes=1.0))]) == []
    lines = setting_differences([
        ("ce · a", run(train__epochs=10, model__args={"widths": [8], "whiten": True})),
        ("ce · b", run(train__epochs=12, model__args={"widths": [8]}, source="cifar10n-aggre/train")),
        ("gce · c", run("gce", seed=1, train__epochs=12, model__args={"widths": [8]}, cpu="Intel Xeon"))])
    assert lines == [
        "note: these runs trained or tested on different data, so their accuracies and flag quality are not like "
        "with like:",
        "  data: source = cifar10n-worst/train (ce · a, gce · c); cifar10n-aggre/train (ce · b)",
        "note: these runs differ in more than the method:",
        "  model.args.whiten = true (ce · a); (not set) (ce · b, gce · c)",
        "  train.epochs = 10 (ce · a); 12 (ce · b, gce · c)",
        "note: different seeds; a difference between single runs may be seed noise: train.seed = 0 (ce · a, ce · b); "
        "1 (gce · c)",
        "note: s/epoch measured on different machines or devices (AMD EPYC (2 CPUs, torch threads: 2), torch ?, "
        "device cpu; Intel Xeon (2 CPUs, torch threads: 2), torch ?, device cpu): compare times only within one "
        "machine"]
    # long values are cut for the line but grouped whole; an empty model.args is every argument at its default
    lines = setting_differences([("a", run(optim__milestones=list(range(40)), model__args={})),
                                 ("b", run(optim__milestones=list(range(41)), model__args={"hidden": [16]}))])
    assert lines == ["note: these runs differ in more than the method:",
                     "  model.args.hidden = (not set) (a); [16] (b)",
                     "  optim.milestones = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16... (a); "
                     "[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16... (b)"]
    # an older results.json without its settings is named, not compared
    old = run()
    del old["config"]
    assert setting_differences([("ce", run()), ("old", old)]) == [
        "note: old has no stored settings (an older results.json): it is not compared"]


def test_curves_draw_each_runs_recorded_values():
    from matplotlib.figure import Figure

    from noisyfit.report import curves

    drawn = {}
    real_savefig = Figure.savefig
    Figure.savefig = lambda fig, path, **kw: drawn.update(fig=fig)
    try:
        runs = [("a", {"epochs": [{"epoch": 0, "val_acc": 0.5, "train_loss": 2.0}, {"epoch": 1, "val_acc": 0.7,
                                                                                      "train_loss": 1.0}],
                       "selected": {"epoch": 1}}),
                ("b", {"epochs": [{"epoch": 0, "val_acc": 0.6, "train_loss": 1.5}]})]
        assert curves.plot_curves(runs, "unused.png") == ["val_acc", "train_loss"]  # no test_acc: no panel
    finally:
        Figure.savefig = real_savefig
    val, loss = drawn["fig"].axes
    first = val.lines[0]
    assert list(first.get_xdata()) == [1, 2] and list(first.get_ydata()) == [50.0, 70.0]
    assert list(val.lines[1].get_ydata()) == [70.0]  # a's selected epoch 2, starred
    assert list(loss.lines[1].get_ydata()) == [1.5]  # b's loss
    with pytest.raises(ValueError, match="recorded per-epoch"):
        curves.plot_curves([("c", {"epochs": []})], "unused.png")


def test_overrides_may_come_between_options(tmp_path):
    # argparse binds a positional list once: `... a.b=1 --epochs 1 c.d=2` rejected c.d=2 (exit 2), as a
    # new user's `--epochs 30 optim.warmup_epochs=5 --out X` was
    from noisyfit.cli import build_parser

    args = build_parser().parse_args(["train", "--dataset", "digits", "train.seed=3", "--epochs", "1",
                                      "optim.warmup_epochs=0.5", "--out", str(tmp_path / "r"), "train.tensorboard=false"])
    assert args.overrides == ["train.seed=3", "optim.warmup_epochs=0.5", "train.tensorboard=false"]
    assert args.epochs == 1
    with pytest.raises(SystemExit):  # anything else left over is still an error
        build_parser().parse_args(["train", "--dataset", "digits", "--out", "x", "a.b=1", "--epochs", "1", "stray"])
    assert main(["train", "--dataset", "digits", "train.seed=3", *QUICK[:4], "optim.warmup_epochs=0.5",
                 "--out", str(tmp_path / "run"), "train.tensorboard=false", "model.args.hidden=[32]"]) == 0
    cfg = json.loads((tmp_path / "run" / "results.json").read_text())["config"]
    assert cfg["train"]["seed"] == 3 and cfg["optim"]["warmup_epochs"] == 0.5 and cfg["model"]["args"]["hidden"] == [32]


def test_a_refused_command_leaves_no_empty_out_folder(tmp_path, capsys):
    out = tmp_path / "new"
    assert main(["train", "--dataset", "digits", "--method", "nope", "--out", str(out)]) == 2
    assert "unknown method 'nope'" in capsys.readouterr().err and not out.exists()
    kept = tmp_path / "mine"
    kept.mkdir()  # a folder the user made stays
    assert main(["train", "--dataset", "digits", "--method", "nope", "--out", str(kept)]) == 2 and kept.is_dir()
