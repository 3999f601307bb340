"""`noisyfit bench report` on hand-made result files: every number checked against a hand computation."""

import json

import numpy as np
import pytest

from noisyfit.bench.aggregate import mean_std, recovery_ratio
from noisyfit.bench.evidence import pr_points
from noisyfit.bench.files import run_key
from noisyfit.bench.report import fmt_stat, write_report
from noisyfit.cli import main

MACHINE = {"cpu": "Test CPU", "cpu_count": 2, "torch_threads": 2, "torch": "2.13.0+cpu"}


def fake_result(seed, acc_sel, acc_last, *, spe=1.0, rss=400.0, wall=100.0, epochs=3, backbone="mlp",
                f1=0.5, noisy=True, machine=MACHINE):
    cfg = {"data": {"dataset": "digits", "noise": "sym:0.4" if noisy else None, "val_fraction": 0.1,
                    "train_subset": None, "data_dir": None},
           "model": {"backbone": backbone, "args": {}},
           "optim": {"name": "sgd", "lr": 0.05, "schedule": "cosine"},
           "train": {"epochs": epochs, "batch_size": 64, "precision": "fp32", "seed": seed,
                     "progress": False},
           "method": {"name": "x", "args": {}}}
    curve = [{"epoch": e, "train_seconds": spe, "eval_seconds": 0.1, "val_acc": 0.5,
              "test_acc": acc_last - 0.01 * (epochs - 1 - e)} for e in range(epochs)]
    det = ({"precision": f1, "recall": f1, "f1": f1, "auroc": 0.9, "auprc": 0.8, "estimated_noise_rate": 0.3,
            "true_noise_rate": 0.4, "noise_rate_error": -0.1, "f1_at_true_k": f1 + 0.1} if noisy else None)
    return {"schema": "noisyfit.results/1", "noisyfit_version": "0.1.0", "commit": "abc123",
            "machine": machine, "created": "2026-01-02T03:04:05+0000", "seed": seed, "config": cfg,
            "epochs": curve, "final": {"epoch": epochs - 1, "test_acc": acc_last},
            "selected": {"epoch": 1, "test_acc": acc_sel},
            "detection": det, "method": {"flag_rule": "p(given label) < 0.5"},
            "compute": {"device": "cpu", "seconds_per_epoch": spe, "peak_rss_mb": rss},
            "bench": {"wall_seconds": wall}}


def put(root, suite, method, ls, seed, data):
    d = root / suite
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{run_key(method, ls, seed)}.json").write_text(json.dumps(data))


@pytest.fixture
def results(tmp_path):
    root = tmp_path / "results"
    for s, (sel, last) in enumerate([(0.60, 0.50), (0.62, 0.52), (0.64, 0.54)]):
        put(root, "smoke", "ce", "sym40", s, fake_result(s, sel, last, f1=0.4 + 0.1 * s))
    put(root, "smoke", "oracle", "clean", 0, fake_result(0, 0.90, 0.92, noisy=False))
    gce0, gce1 = (fake_result(s, 0.75 + 0.02 * s, 0.61 + 0.02 * s, spe=2.5, rss=600.0, wall=250.0)
                  for s in (0, 1))
    gce0["compute"]["others_cpu_share_median"] = 0.02  # seed 1 shared the machine more: the cell shows it
    gce1["compute"]["others_cpu_share_median"] = 0.31
    # seed 1 trained in 2 sessions but the bench recorded 1 (killed outright): its wall time is a lower bound
    gce1["compute"]["sessions"], gce1["bench"]["sessions"] = [{}, {}], 1
    gce0["compute"]["sessions"], gce0["bench"]["sessions"] = [{}, {}], 2
    # gce's runs predate the common-rule figure: it is read off their stored PR curves (seed 0's crosses
    # precision = recall between (p 0.6, r 0.8) and (p 0.7, r 0.6): 0.6 + (-0.2 / -0.3) * 0.1 = 0.6667)
    for g in (gce0, gce1):
        del g["detection"]["f1_at_true_k"]
    gce0["epochs"][-1]["memorised"], gce0["epochs"][-1]["fit_clean"] = 0.25, 0.9
    gce0["epochs"][1]["health"] = {"selected_share": 0.5}
    gce0["epochs"][2]["health"] = {"selected_share": 0.55, "tipping_epoch": 2.0}
    put(root, "smoke", "gce", "sym40", 0, gce0)
    (root / "smoke" / "gce__sym40__seed0.pr.json").write_text(json.dumps(
        {"precision": [0.4, 0.6, 0.7, 0.9], "recall": [1.0, 0.8, 0.6, 0.2], "auprc": 0.8, "positives": 4, "n": 10}))
    (root / "smoke" / "gce__sym40__seed1.pr.json").write_text(json.dumps(
        {"precision": [0.4, 0.8], "recall": [1.0, 0.6], "auprc": 0.8, "positives": 4, "n": 10}))
    put(root, "smoke", "gce", "sym40", 1, gce1)
    # a gce run with a different config (20 epochs): a variant, never averaged with the two above
    put(root, "smoke", "gce", "sym40", 2, fake_result(2, 0.80, 0.80, epochs=20))
    put(root, "smoke", "pemm", "sym40", 0, fake_result(0, 0.70, 0.70, backbone="fastcnn"))
    jump = fake_result(0, 0.66, 0.65)  # a method with a second predictor (code decoding)
    jump["config"]["optim"]["grad_clip"] = 5.0  # and its gradients clipped where CE's are not
    for e, row in enumerate(jump["epochs"]):
        row["test_acc_code"] = 0.40 + 0.1 * e  # epochs 0, 1, 2 -> 40, 50, 60; selected epoch is 1
    put(root, "smoke", "jump_teaching", "sym40", 0, jump)
    failed = {"returncode": 1, "failed": "2026-01-02T05:00"}
    (root / "smoke" / "car__sym40__seed0.failed.json").write_text(json.dumps(failed))
    # a second suite with its own CE: the suites are never pooled
    put(root, "cpu-cifar10n", "ce", "worst", 0, fake_result(0, 0.11, 0.11))
    # a foreign results folder (the lead's protocol files) is ignored
    (root / "protocol").mkdir()
    (root / "protocol" / "ce__cifar10.json").write_text("{}")
    return root


def _row(md, label, after):
    """The first table row of ``label`` after the heading ``after``."""
    section = md[md.index(after):]
    return next(line for line in section.splitlines() if line.startswith(f"| {label} |"))


def test_helpers_by_hand():
    assert mean_std([0.60, 0.62, 0.64]) == (pytest.approx(0.62), pytest.approx(0.02), 3)
    assert mean_std([0.5]) == (0.5, None, 1)
    assert fmt_stat([0.60, 0.62, 0.64], scale=100, with_n=True) == "62.00 ± 2.00 (n=3)"
    assert fmt_stat([0.9], scale=100, with_n=True) == "90.00 (n=1)†"
    assert fmt_stat([], scale=100) == "–"
    assert recovery_ratio(0.76, 0.62, 0.90) == pytest.approx(0.5)
    assert recovery_ratio(0.76, 0.62, 0.60) is None  # oracle below CE: no ratio


def test_report_tables(results, tmp_path):
    out = tmp_path / "bench" / "RESULTS.md"
    path, n = write_report(results, out, now="2026-01-02 10:00 UTC")
    md = path.read_text()
    assert n == 10
    assert md.startswith("# noisyfit benchmark results")
    assert "Generated file: do not edit by hand" in md.splitlines()[2] and "10 result file(s)" in md
    smoke, cpu = md.index("## Suite `smoke`"), md.index("## Suite `cpu-cifar10n`")
    assert smoke < cpu
    # evidence header
    assert "Test CPU (2 CPUs, torch threads: 2), torch 2.13.0+cpu" in md and "abc123" in md

    acc = "#### Test accuracy"
    assert _row(md, "ce", acc) == "| ce | 52.00 ± 2.00 (n=3) | 62.00 ± 2.00 (n=3) | – | – |"
    assert _row(md, "oracle", acc) == "| oracle | – | – | 92.00 (n=1)† | 90.00 (n=1)† |"
    assert _row(md, "gce", acc) == "| gce | 62.00 ± 1.41 (n=2) | 76.00 ± 1.41 (n=2) | – | – |"
    # another epoch budget: its own row, marked, with what differs said
    assert _row(md, "gce [variant 2] ‡", acc) == \
        "| gce [variant 2] ‡ | 80.00 (n=1)† | 80.00 (n=1)† | – | – |"
    assert "**gce [variant 2]** on sym40: train.epochs=20" in md
    assert _row(md, "pemm ‡", acc).startswith("| pemm ‡ |")  # another backbone than CE's is marked
    assert "model.backbone='fastcnn' (CE: 'mlp')" in md
    assert _row(md, "jump_teaching ‡", acc).startswith("| jump_teaching ‡ |")  # so is a clipped method
    assert "**jump_teaching**: optim.grad_clip=5.0 (CE: None)" in md

    heads = "#### Other predictors"
    section = md[md.index(heads):md.index("#### Recovery ratio")]
    assert "| jump_teaching | sym40 | main (`test_acc`) | 65.00 (n=1)† | 66.00 (n=1)† |" in section
    assert "| jump_teaching | sym40 | code | 60.00 (n=1)† | 50.00 (n=1)† |" in section
    assert "| ce |" not in section  # one predictor: nothing to add

    rec = "#### Recovery ratio"
    # selected: (76 - 62) / (90 - 62) = 0.50; last: (62 - 52) / (92 - 52) = 0.25; the oracle has one seed
    assert _row(md, "gce", rec) == "| gce | 0.50 (n=2)† | 0.25 (n=2)† |"

    det = "#### Detection"
    assert _row(md, "ce", det) == ("| ce | sym40 | 3 | 50.0 ± 10.0 | 50.0 ± 10.0 | 50.0 ± 10.0 | 60.0 ± 10.0 "
                                   "| 90.0 ± 0.0 | 80.0 ± 0.0 | 30.0 ± 0.0 | 40.0 ± 0.0 |")
    # gce: 0.6667 (seed 0) and seed 1's crossing (0.4 + (-0.6 / -0.8) * 0.4 = 0.7): mean 68.3, std 2.4
    assert _row(md, "gce", det).split(" | ")[6] == "68.3 ± 2.4 ≈"
    assert "read off their stored 101-point precision-recall curve" in md

    health = "#### Mechanism health"
    assert _row(md, "gce", health) == "| gce | sym40 | 0 | `fit_clean` | e3 0.9 | 0.9 |"
    section = md[md.index(health):md.index("#### Cost")]
    assert "| gce | sym40 | 0 | `memorised` | e3 0.25 | 0.25 |" in section
    assert "| gce | sym40 | 0 | `selected_share` | e2 0.5 · e3 0.55 | 0.55 |" in section
    assert "| gce | sym40 | 0 | `tipping_epoch` | e3 2 | 2 |" in section
    assert "| ce |" not in section  # nothing recorded: no rows
    assert "| oracle |" not in md[md.index(det):md.index("#### Cost")]  # clean labels: nothing to detect

    cost = "#### Cost"
    # CE: 1.0 s/epoch, 400 MB, 100 s per run; gce: 2.5 s, 600 MB, 250 s
    # others' CPU: the largest seed's median-epoch share; CE's runs predate the measurement
    assert _row(md, "gce", cost) == "| gce | sym40 | 2 | 2.50 | 2.50× | 31% | 600 | 1.50× | ≥ 250.0 | ≥ 2.50× |"
    assert "≥ marks a wall time that misses a session" in md
    assert _row(md, "ce", cost) == "| ce | sym40 | 3 | 1.00 | 1.00× | – | 400 | 1.00× | 100.0 | 1.00× |"

    assert "car · sym40 · seed 0: **failed**" in md
    # the other suite keeps its own single CE run: nothing from smoke leaks into it
    assert _row(md, "ce", "## Suite `cpu-cifar10n`") == "| ce | 11.00 (n=1)† | 11.00 (n=1)† |"
    assert "62.00" not in md[cpu:md.index("## Published")]
    # published numbers only after our tables, in their own labelled section
    pub = md.index("## Published reference numbers (not ours)")
    assert pub > cpu and "87.77 ± 0.38" in md[pub:] and "87.77" not in md[:pub]


def test_report_plots_are_written_linked_and_pruned(results, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "bench" / "RESULTS.md"
    stale = tmp_path / "bench" / "plots" / "smoke" / "acc_vs_time__gone.png"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"old")
    pr = pr_points(np.array([True, False, True, False]), np.array([0.1, 0.2, 0.3, 0.9]))
    (results / "smoke" / "ce__sym40__seed0.pr.json").write_text(json.dumps(pr))
    md = write_report(results, out)[0].read_text()
    for name in ("acc_vs_time__sym40.png", "test_acc_per_epoch__sym40.png", "pr__sym40.png"):
        png = tmp_path / "bench" / "plots" / "smoke" / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"(plots/smoke/{name})" in md
    assert not stale.exists()  # a figure no table backs any more is removed
    # the other suite has no PR sidecar: no detection figure is drawn for it
    assert not (tmp_path / "bench" / "plots" / "cpu-cifar10n" / "pr__worst.png").exists()
    assert (tmp_path / "bench" / "plots" / "cpu-cifar10n" / "acc_vs_time__worst.png").is_file()


def test_cli_report_and_empty_results(tmp_path, capsys):
    out = tmp_path / "R.md"
    assert main(["bench", "report", "--results", str(tmp_path / "none"), "--out", str(out)]) == 0
    assert "No result files yet" in out.read_text()
    assert main(["bench"]) == 2  # no suite: a user error, not a traceback
    assert "give --suite NAME" in capsys.readouterr().err


def test_other_benchmarks_results_beside_the_suites_are_not_read_as_runs(results, tmp_path):
    # benchmarks/results/two-stage/ names its files like runs (<row>__<label set>__seed<S>.json) but holds
    # another benchmark's schema: no suite section, no run counted
    other = results / "two-stage"
    other.mkdir()
    (other / "elr-relabel__worst__seed0.json").write_text(json.dumps({"schema": "noisyfit.bench.two-stage/1",
                                                                       "test_acc": {"last": 0.79}}))
    out = tmp_path / "R.md"
    _, n = write_report(results, out)
    md = out.read_text()
    assert "two-stage" not in md and "elr-relabel" not in md
    # nor a schema-less file shaped unlike a run (benchmarks/jpeg_gap.py's: "epochs" is a count there, and
    # the report once crashed plotting it as a curve)
    (other / "base__jpeg__seed0.json").write_text(json.dumps({"tag": "base", "epochs": 20,
                                                              "test_acc": {"jpeg": 0.76}}))
    assert write_report(results, tmp_path / "R0.md")[1] == n
    # the recipe ablation's runs are real runs, but its grid has its own table (RECIPE_ABLATION.md)
    ablation = results / "recipe-ablation"
    ablation.mkdir()
    (ablation / "ce-all__clean__seed0.json").write_text(json.dumps(fake_result(0, 0.9, 0.9, noisy=False)))
    assert "recipe-ablation" not in write_report(results, tmp_path / "R1.md")[0].read_text()
    (ablation / "ce-all__clean__seed0.json").unlink()
    ablation.rmdir()
    for f in other.iterdir():
        f.unlink()
    other.rmdir()
    assert write_report(results, tmp_path / "R3.md")[1] == n  # the same runs counted either way


def test_best_minus_last_by_hand(tmp_path):
    from noisyfit.bench.files import StoredRun
    from noisyfit.bench.report import best_minus_last

    def run(*accs):
        return StoredRun("s", "ce", "worst", 0, tmp_path / "x.json",
                         {"epochs": [{"epoch": i, "test_acc": a} for i, a in enumerate(accs)]})

    gap, epoch = best_minus_last(run(0.5, 0.7, 0.7, 0.6))
    assert gap == pytest.approx(0.1) and epoch == 2  # the first of two equal best epochs, 1-based
    assert best_minus_last(run(0.5, 0.6)) == (0.0, 2)  # the last epoch is the best: nothing lost
    assert best_minus_last(run(0.5, None)) is None  # an epoch without a test accuracy: no figure
    assert best_minus_last(StoredRun("s", "ce", "worst", 0, tmp_path / "x.json", {})) is None


def test_report_shows_the_accuracy_lost_by_the_end_of_training(results, tmp_path):
    md = write_report(results, tmp_path / "R.md")[0].read_text()
    assert "#### Accuracy lost by the end of training (points)" in md
    # the fixture's curves rise to their last epoch: nothing lost, best epoch 3 for each of CE's seeds
    assert "| ce | sym40 | 0.00 ± 0.00 (n=3) | 3, 3, 3 |" in md


def test_precision_of_runs_that_flagged_nothing_is_not_a_zero(tmp_path):
    root = tmp_path / "results"
    # two seeds of one method: seed 0 flagged nothing (stored precision 0.0, as the metrics write it), seed 1
    # flagged with precision 0.8; a second method whose only run flagged nothing
    for seed, (prec, n_flag) in enumerate([(0.0, 0), (0.8, 12)]):
        r = fake_result(seed, 0.6, 0.5, f1=0.5)
        r["detection"].update(precision=prec, num_flagged=n_flag)
        put(root, "smoke", "elr", "sym40", seed, r)
    r = fake_result(0, 0.6, 0.5, f1=0.0)
    r["detection"].update(precision=0.0, recall=0.0, num_flagged=0)
    put(root, "smoke", "car", "sym40", 0, r)
    md = write_report(root, tmp_path / "R.md")[0].read_text()
    det = [line for line in md.splitlines() if line.startswith("| elr | sym40 | 2 |")]
    assert det and det[0].split(" | ")[3] == "80.0 (1 of 2 runs: no flags)"  # the mean of the run that flagged
    det = [line for line in md.splitlines() if line.startswith("| car | sym40 | 1† |")]
    assert det and det[0].split(" | ")[3] == "no flags"  # not 0.0: 0/0 is undefined
    assert det[0].split(" | ")[5] == "0.0"  # the F1 stays as stored (recall 0: no wrong label found)
    assert "*no flags*: the run flagged no example" in md
