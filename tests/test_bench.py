"""The bench runner: suites as data, stage expansion, commands, resume / skip / failure, time estimates."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from noisyfit.bench import plan as plan_mod
from noisyfit.bench import runner as runner_mod
from noisyfit.bench.cleanlab_row import rows_of
from noisyfit.bench.evidence import pr_points
from noisyfit.bench.files import parse_name, run_key
from noisyfit.bench.plan import RunSpec, expand_stage, expand_suite, rank_methods, resolve_config
from noisyfit.bench.runner import (
    Estimator,
    epochs_done,
    execute,
    fmt_duration,
    run_estimate,
    RunLocked,
    run_lock,
    run_status,
    run_suite,
    time_left,
)
from noisyfit.bench.suites import CLEANLAB, ORACLE, SUITES, LabelSet, get_suite
from noisyfit.config import ConfigError, load_config

CPU = SUITES["cpu-cifar10n"]


@pytest.fixture
def fake_presets(monkeypatch):
    """Presets exist for ce, dividemix and newmethod only (independent of which files have landed)."""
    have = {"ce/cpu-cifar10n", "dividemix/cpu-cifar10n", "newmethod/cpu-cifar10n"}
    monkeypatch.setattr(plan_mod, "preset_exists", lambda name: name in have)
    return ["ce", "gce", "dividemix", "newmethod"]  # gce registered but without a preset


def _store(results_root, suite, method, ls, seed, acc):
    d = results_root / suite
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{run_key(method, ls, seed)}.json").write_text(json.dumps({"selected": {"test_acc": acc}}))


def test_cpu_suite_runs_ce_then_oracle_then_methods_on_worst_then_aggre(tmp_path, fake_presets):
    plans = expand_suite(CPU, registered=fake_presets, results_root=tmp_path)
    assert [r.key for r in plans[0].runs] == ["ce__worst__seed0", "ce__worst__seed1", "ce__worst__seed2"]
    assert [r.key for r in plans[1].runs] == [f"oracle__clean__seed{s}" for s in (0, 1, 2)]
    # the oracle is CE's preset on the clean CIFAR-10 labels
    oracle_cmd = plans[1].runs[0].command(tmp_path / "r")
    assert oracle_cmd[oracle_cmd.index("--config") + 1] == "ce/cpu-cifar10n"
    assert oracle_cmd[oracle_cmd.index("--dataset") + 1] == "cifar10"
    # every method once on worst: ce is not repeated, planned order first, then other registered ones
    assert [r.key for r in plans[2].runs] == ["dividemix__worst__seed0", "newmethod__worst__seed0"]
    notes = " ".join(plans[2].notes)
    assert "skip gce: no preset gce/cpu-cifar10n" in notes
    assert "skip pemm: not a registered method" in notes
    worst_stages = [i for i, s in enumerate(CPU.stages) if "worst" in s.label_sets]
    aggre_stages = [i for i, s in enumerate(CPU.stages) if "aggre" in s.label_sets]
    assert max(worst_stages) < min(aggre_stages)
    assert CPU.label_set("aggre").dataset == "cifar10n-aggre"


def test_best_k_waits_for_results_then_picks_the_two_best_non_ce_methods(tmp_path, fake_presets):
    stage = next(i for i, s in enumerate(CPU.stages) if s.methods == ("best:2",))
    empty = expand_stage(CPU, stage, registered=fake_presets, results_root=tmp_path)
    assert empty.runs == [] and empty.undecided == 2 * 1 * 2  # 2 methods x worst x seeds 1, 2
    _store(tmp_path, "cpu-cifar10n", "ce", "worst", 0, 0.95)  # CE is the baseline, never "best"
    _store(tmp_path, "cpu-cifar10n", "dividemix", "worst", 0, 0.80)
    _store(tmp_path, "cpu-cifar10n", "newmethod", "worst", 0, 0.85)
    _store(tmp_path, "cpu-cifar10n", "newmethod", "aggre", 0, 0.10)  # other label sets do not rank
    assert [m for m, _, _ in rank_methods(CPU, tmp_path)] == ["newmethod", "dividemix"]
    p = expand_stage(CPU, stage, registered=fake_presets, results_root=tmp_path)
    assert [r.key for r in p.runs] == ["newmethod__worst__seed1", "newmethod__worst__seed2",
                                       "dividemix__worst__seed1", "dividemix__worst__seed2"]
    assert p.undecided == 0


def test_only_and_seeds_filter_the_plan(tmp_path, fake_presets):
    plans = expand_suite(CPU, registered=fake_presets, results_root=tmp_path, only={"ce", ORACLE}, seeds=(7,))
    keys = [r.key for p in plans for r in p.runs]
    assert keys == ["ce__worst__seed7", "oracle__clean__seed7", "ce__aggre__seed7"]


def test_train_and_cleanlab_commands(tmp_path):
    ls = LabelSet("sym40", "digits", noise="sym:0.4")
    spec = RunSpec("smoke", "gce", ls, 3, "smoke/protocol", ("method.name=gce",))
    run_dir = spec.run_dir(tmp_path)
    assert run_dir == tmp_path / "smoke" / "gce" / "sym40" / "seed3"
    cmd = spec.command(run_dir, resume=True, python="py")
    assert cmd[:4] == ["py", "-m", "noisyfit.cli", "train"]
    assert cmd[cmd.index("--noise") + 1] == "sym:0.4" and cmd[cmd.index("--seed") + 1] == "3"
    assert cmd[cmd.index("--out") + 1] == str(run_dir) and "--resume" in cmd
    assert cmd[-1] == "method.name=gce"  # overrides last: they win over the preset and flags
    cl = RunSpec("smoke", CLEANLAB, ls, 0, "smoke/protocol").command(run_dir, resume=True, python="py")
    assert cl[:3] == ["py", "-m", "noisyfit.bench.cleanlab_row"] and "--resume" not in cl


def test_smoke_fallback_takes_method_args_from_the_cpu_preset(tmp_path, monkeypatch):
    (tmp_path / "foo").mkdir()
    (tmp_path / "foo" / "cpu-cifar10n.yaml").write_text(
        "method:\n  name: foo\n  args: {warmup: 2, tau: 0.5, mode: hard, widths: [3, 4]}\n")
    monkeypatch.setattr(plan_mod, "PRESET_DIR", tmp_path)
    monkeypatch.setattr(plan_mod, "preset_exists", lambda name: (tmp_path / f"{name}.yaml").is_file())
    config, overrides = resolve_config(SUITES["smoke"], "foo")
    assert config == "smoke/protocol"
    # the overrides, parsed the way `noisyfit train` parses them, give back the same args
    cfg = load_config(None, list(overrides))
    assert cfg.method.name == "foo"
    assert cfg.method.args == {"warmup": 2, "tau": 0.5, "mode": "hard", "widths": [3, 4]}
    with pytest.raises(plan_mod.NoPreset, match="no preset bar/cpu-cifar10n"):
        resolve_config(CPU, "bar")


def test_a_variant_row_runs_its_base_method_under_its_own_preset_and_never_the_plain_one(tmp_path,
                                                                                          monkeypatch):
    have = {"bkd/cpu-cifar10n", "bkd/cpu-cifar10n-detach"}
    monkeypatch.setattr(plan_mod, "preset_exists", lambda name: name in have)
    every = next(i for i, s in enumerate(CPU.stages) if s.methods == ("*",))
    p = expand_stage(CPU, every, registered=["bkd"], results_root=tmp_path)
    assert [r.key for r in p.runs] == ["bkd__worst__seed0", "bkd-detach__worst__seed0"]
    variant = p.runs[1]
    assert variant.trained_method == "bkd" and variant.config == "bkd/cpu-cifar10n-detach"
    assert variant.run_dir(tmp_path).parts[-3] == "bkd-detach"  # its own checkpoints, not the base run's
    # a variant whose preset is missing is skipped with a note, not run as the base method
    have.discard("bkd/cpu-cifar10n-detach")
    with pytest.raises(plan_mod.NoPreset, match="no preset bkd/cpu-cifar10n-detach"):
        resolve_config(CPU, "bkd-detach")
    with pytest.raises(ValueError, match="<method>-<variant>"):
        plan_mod.split_variant("bkd-")
    # the packaged variant preset differs from the base preset in exactly the detached target
    base = load_config(plan_mod.PRESET_DIR / "bkd/cpu-cifar10n.yaml")
    det = load_config(plan_mod.PRESET_DIR / "bkd/cpu-cifar10n-detach.yaml")
    assert det.method.args == {**base.method.args, "detach_student_target": True}
    est = Estimator()
    est.add("bkd", 100.0)
    assert est.estimate("bkd-detach") == pytest.approx(100.0)


def test_label_set_overrides_give_coteaching_the_noise_rate_of_aggre_only(tmp_path, monkeypatch):
    monkeypatch.setattr(plan_mod, "preset_exists", lambda name: name in {"coteaching/cpu-cifar10n",
                                                                         "ce/cpu-cifar10n"})
    stage = next(i for i, s in enumerate(CPU.stages) if s.methods == ("ce", "best:2") and s.seeds == (0,))
    _store(tmp_path, "cpu-cifar10n", "coteaching", "worst", 0, 0.8)
    p = expand_stage(CPU, stage, registered=["ce", "coteaching"], results_root=tmp_path)
    by_key = {r.key: r for r in p.runs}
    assert by_key["coteaching__aggre__seed0"].overrides == ("method.args.forget_rate=0.09",)
    assert by_key["ce__aggre__seed0"].overrides == ()
    assert CPU.label_set("worst").overrides_for("coteaching") == ()  # the preset's 0.4 is worst's rate
    assert CPU.label_set("aggre").overrides_for("j_coteaching-x") == ("method.args.forget_rate=0.09",)
    assert [r.key for r in expand_stage(CPU, stage, registered=["ce", "coteaching"], results_root=tmp_path,
                                        label_sets={"worst"}).runs] == []
    with pytest.raises(ConfigError, match="no label set"):
        expand_stage(CPU, stage, registered=["ce"], results_root=tmp_path, label_sets={"nope"})


def test_result_file_names_round_trip():
    assert parse_name("j_coteaching__worst__seed12.json") == ("j_coteaching", "worst", 12, "")
    assert parse_name("ce__sym40__seed0.pr.json") == ("ce", "sym40", 0, "pr")
    assert parse_name("ce__cifar10.json") is None  # not a bench file (e.g. the lead's protocol results)
    with pytest.raises(ValueError):
        run_key("a.b", "worst", 0)
    with pytest.raises(ConfigError, match="unknown suite 'nope'"):
        get_suite("nope")


def test_estimator_uses_measured_times_then_guessed_relative_costs(tmp_path):
    assert Estimator().estimate("ce") is None
    assert Estimator(ce_seconds_guess=6.0).estimate("dividemix") == pytest.approx(6.0 * 8.5)
    est = Estimator(ce_seconds_guess=1000.0)
    est.add("ce", 10.0)
    est.add("ce", 20.0)
    assert est.estimate("ce") == pytest.approx(15.0)  # measured beats the guess
    assert est.estimate("dividemix") == pytest.approx(15.0 * 8.5)
    est.add("coteaching", 40.0)  # CE-equivalent 40 / 2.0 = 20; the mean CE-equivalent is 17.5
    assert est.estimate("dividemix") == pytest.approx(17.5 * 8.5)
    ls = LabelSet("worst", "cifar10n-worst")
    specs = [RunSpec("cpu-cifar10n", m, ls, 0, f"{m}/cpu-cifar10n") for m in ("ce", "coteaching")]
    left = time_left(est, specs, 1, tmp_path / "results", tmp_path / "runs")  # two runs to do, one undecided
    assert left == pytest.approx(15.0 + 40.0 + 17.5 * 2.0)
    assert [fmt_duration(s) for s in (5, 125, 7260, None)] == ["5s", "2m05s", "2h01m", "?"]


def test_pr_points_by_hand():
    # ranked by clean score: noisy, clean, noisy, clean
    pr = pr_points(np.array([True, False, True, False]), np.array([0.1, 0.2, 0.3, 0.9]),
                   flags=np.array([True, True, False, False]))
    assert pr["recall"] == [1.0, 1.0, 0.5, 0.5]
    assert pr["precision"] == pytest.approx([0.5, 0.66667, 0.5, 1.0], abs=1e-5)
    assert pr["auprc"] == pytest.approx(0.5 * 1.0 + 0.5 * 2 / 3)
    assert pr["flag_point"] == {"precision": 0.5, "recall": 0.5}
    assert pr["positives"] == 2 and pr["n"] == 4
    unflagged = pr_points(np.array([True, False, True, False]), np.array([0.1, 0.2, 0.3, 0.9]), flags=np.zeros(4, bool))
    assert unflagged["flag_point"] is None  # nothing flagged: no point at (0, 0) on the curve
    rng = np.random.default_rng(0)
    thin = pr_points(rng.random(1000) < 0.3, rng.random(1000), max_points=5)
    assert len(thin["recall"]) == 5 and thin["recall"][0] == 1.0  # thinned, the full-recall end kept
    assert pr_points(np.zeros(5, bool), np.ones(5)) is None  # no noisy sample: no curve


def test_rows_of_maps_the_run_split_onto_out_of_fold_rows():
    assert rows_of(np.array([1, 3, 4]), np.arange(6)).tolist() == [1, 3, 4]
    assert rows_of(np.array([5, 9]), np.array([2, 5, 7, 9])).tolist() == [1, 3]  # train_subset case
    with pytest.raises(ValueError):
        rows_of(np.array([4]), np.array([2, 5, 7]))


def _hold_run_lock(run_dir):
    """Another process (a second bench) holding ``run_dir``'s lock until it is killed."""
    code = ("import sys, time; from pathlib import Path; from noisyfit.bench.runner import run_lock; "
            "lock = run_lock(Path(sys.argv[1])); lock.__enter__(); print('held', flush=True); time.sleep(120)")
    child = subprocess.Popen([sys.executable, "-c", code, str(run_dir)], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "held"
    return child


def test_run_lock_refuses_a_live_holder_naming_it_and_is_free_once_the_holder_is_killed(tmp_path):
    run_dir = tmp_path / "ce" / "worst" / "seed0"
    child = _hold_run_lock(run_dir)
    try:
        with pytest.raises(RunLocked) as held:
            with run_lock(run_dir):
                pass
        assert held.value.pid == child.pid
    finally:
        child.kill()  # kill -9: no clean-up runs, the kernel drops the lock
        child.wait()
    with run_lock(run_dir):
        assert (run_dir / ".bench-run.lock").read_text() == str(os.getpid())
        # meanwhile a second holder in another process is refused (exit 3 = RunLocked there)
        other = subprocess.run([sys.executable, "-c", "import sys; from pathlib import Path; "
                                "from noisyfit.bench.runner import run_lock, RunLocked\n"
                                "try:\n    run_lock(Path(sys.argv[1])).__enter__()\n"
                                "except RunLocked:\n    sys.exit(3)", str(run_dir)])
        assert other.returncode == 3


def test_two_benches_share_a_suite_each_running_what_the_other_does_not_hold(tmp_path, capsys):
    suite, results, runs = SUITES["smoke"], tmp_path / "results", tmp_path / "runs"
    ce_spec = expand_suite(suite, registered=["ce"], results_root=results, only={"ce"})[0].runs[0]
    child = _hold_run_lock(ce_spec.run_dir(runs))  # the other bench is training CE
    try:
        summary = run_suite(suite, results_root=results, runs_root=runs, only={"ce", ORACLE})
    finally:
        child.kill()
        child.wait()
    out = capsys.readouterr().out
    assert summary.busy == [ce_spec.key] and summary.ran == ["oracle__clean__seed0"]
    assert f"another bench process (pid {child.pid}) is running it, skip" in out
    assert "1 left to another bench process" in out
    assert not (results / "smoke" / f"{ce_spec.key}.json").exists()
    # the other bench gone, the same command runs what it left (here with one thread per run process)
    summary = run_suite(suite, results_root=results, runs_root=runs, only={"ce", ORACLE}, threads=1, seeds=(0,))
    assert summary.ran == [ce_spec.key] and summary.skipped == ["oracle__clean__seed0"]
    # seeds given replace every stage's: the stage headings say so (a stage's note may name other seeds)
    assert "-- stage 1/4: ce [seeds as given: 0]" in capsys.readouterr().out
    stored = json.loads((results / "smoke" / f"{ce_spec.key}.json").read_text())
    assert stored["machine"]["torch_threads"] == 1


def test_unavailable_cleanlab_row_leaves_a_note_and_no_run(tmp_path, monkeypatch):
    monkeypatch.setattr(runner_mod, "unavailable_reason", lambda: "cleanlab is not installed")
    spec = RunSpec("smoke", CLEANLAB, LabelSet("sym40", "digits", noise="sym:0.4"), 0, "smoke/protocol")
    status, info = execute(spec, tmp_path / "results" / "smoke", tmp_path / "runs")
    assert status == "unavailable"
    note_file = tmp_path / "results" / "smoke" / "cleanlab__sym40__seed0.unavailable.json"
    note = json.loads(note_file.read_text())
    assert note["reason"] == "cleanlab is not installed"
    assert not (tmp_path / "results" / "smoke" / "cleanlab__sym40__seed0.json").exists()
    assert not spec.run_dir(tmp_path / "runs").exists()


SMOKE_CE = ("smoke/protocol", ("method.name=ce", "train.epochs=4"))


def test_a_cut_cleanlab_row_keeps_its_finished_folds(tmp_path):
    # the row writes folds/fold<k>.npz as each fold ends; a rerun must resume there, not clear the folder
    spec = RunSpec("smoke", CLEANLAB, LabelSet("sym40", "digits", noise="sym:0.4"), 0, "smoke/protocol")
    results, runs = tmp_path / "results", tmp_path / "runs"
    folds = spec.run_dir(runs) / "folds"
    folds.mkdir(parents=True)
    assert run_status(spec, results, runs) == "todo"  # a folder with no finished fold starts afresh
    (folds / "fold0.npz").write_bytes(b"kept")
    assert run_status(spec, results, runs) == "resume"


def _smoke_spec(*extra: str) -> RunSpec:
    return RunSpec("smoke", "ce", LabelSet("sym40", "digits", noise="sym:0.4"), 0, SMOKE_CE[0],
                   SMOKE_CE[1] + extra)


def test_a_cut_run_is_resumed_and_a_failed_one_leaves_its_log(tmp_path):
    from noisyfit.engine.trainer import Trainer

    spec = _smoke_spec()
    runs, results = tmp_path / "runs", tmp_path / "results" / "smoke"
    run_dir = spec.run_dir(runs)
    # what `noisyfit train` builds from the spec's command, stopped after 2 of 4 epochs
    flags = {"data": {"dataset": "digits", "noise": "sym:0.4"}, "train": {"seed": 0, "progress": False}}
    cfg = load_config(SMOKE_CE[0], list(SMOKE_CE[1]), flags=flags)
    assert Trainer(cfg, run_dir).fit(stop_after_epoch=2) is None
    assert run_status(spec, results, runs) == "resume"
    # the bench session that trained those 2 epochs was killed outright: only its heartbeat file is left
    lost = {"started": "2026-01-01T00:00:00+0000", "wall_seconds": 1000.0, "resume": False, "command": ["x"]}
    (run_dir / runner_mod.LIVE_SESSION_FILE).write_text(json.dumps(lost))
    # the time left counts only the epochs still to run
    est = Estimator()
    est.add("ce", 100.0)
    assert epochs_done(run_dir) == (2, 4)
    assert run_estimate(est, spec, "resume", runs) == pytest.approx(50.0)
    assert run_estimate(est, spec, "todo", runs) == pytest.approx(100.0)
    status, info = execute(spec, results, runs)
    assert status == "ran", (run_dir / "bench.log").read_text()
    stored = json.loads((results / "ce__sym40__seed0.json").read_text())
    assert "--resume" in stored["command"] and stored["bench"]["resumed"] is True
    assert [e["epoch"] for e in stored["epochs"]] == [0, 1, 2, 3]  # 2 from before the cut, 2 after
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 4
    # the lost session's time up to its last heartbeat counts, marked lost; the live file is gone
    assert stored["bench"]["sessions"] == 2
    assert 1000.0 < stored["bench"]["wall_seconds"] < 1000.0 + info["seconds"] + 1.0
    first, second = runner_mod._sessions(run_dir)
    assert first["lost"] is True and first["returncode"] is None and first["wall_seconds"] == 1000.0
    assert second["returncode"] == 0 and "lost" not in second
    assert not (run_dir / runner_mod.LIVE_SESSION_FILE).exists()
    assert (results / "ce__sym40__seed0.pr.json").is_file()
    assert run_status(spec, results, runs) == "done"
    assert execute(spec, results, runs)[0] == "skipped"
    # a run whose results were lost from the results folder is only copied again, not retrained
    (results / "ce__sym40__seed0.json").unlink()
    assert execute(spec, results, runs)[0] == "collected"

    bad = _smoke_spec("train.epochs=notanumber")
    bad_results = tmp_path / "results-bad" / "smoke"
    status, info = execute(bad, bad_results, tmp_path / "runs-bad")
    assert status == "failed" and info["note"]["returncode"] == 2
    assert not (bad_results / "ce__sym40__seed0.json").exists()
    note = json.loads((bad_results / "ce__sym40__seed0.failed.json").read_text())
    assert "train.epochs" in note["log_tail"]  # the child's own error message is kept


def test_cleanlab_row_scores_the_rows_the_methods_are_scored_on(monkeypatch):
    pytest.importorskip("cleanlab")
    oof = pytest.importorskip("noisyfit.detect.oof")
    from noisyfit.bench.cleanlab_row import run_cleanlab_row
    from noisyfit.data.tabular import load_digits_splits
    from noisyfit.engine.run_data import prepare_run_data

    splits = load_digits_splits()
    cfg = load_config("smoke/protocol", flags={"data": {"noise": "sym:0.4", "val_fraction": 0.2}})
    asked = {}

    def oracle_oof(c, s, *, folds, epochs, seed, **_):
        # out-of-fold probabilities that know the true labels: every wrong label is findable
        asked.update(val_fraction=c.data.val_fraction, folds=folds, epochs=epochs)
        full = prepare_run_data(c.data, seed, s).train
        probs = np.full((len(full), full.num_classes), 0.1 / (full.num_classes - 1))
        probs[np.arange(len(full)), full.true_labels] = 0.9
        return oof.OutOfFold(probs, full.labels, full.true_labels, np.arange(len(full)), np.zeros(len(full)),
                             list(full.class_names), None, 1.0, {"per_fold": [{"seconds": 1.0}]})

    monkeypatch.setattr(oof, "out_of_fold", oracle_oof)
    r = run_cleanlab_row(cfg, None, splits=splits)
    assert asked == {"val_fraction": 0.0, "folds": 5, "epochs": 15}  # every row predicted, CE's budget
    assert r["data"]["num_train"] == len(prepare_run_data(cfg.data, 0, splits).train)  # val rows excluded
    det = r["detection"]
    # misaligned rows would score about 0.5; aligned ones separate perfectly
    assert det["auroc"] == 1.0
    assert det["precision"] > 0.99 and det["recall"] > 0.99
    assert det["true_noise_rate"] == pytest.approx(0.4, abs=0.03)


def test_a_finished_run_folder_holding_another_run_is_not_collected(tmp_path):
    spec = _smoke_spec()
    run_dir = spec.run_dir(tmp_path / "runs")
    run_dir.mkdir(parents=True)
    cfg = {"data": {"dataset": "digits", "noise": "sym:0.4"}, "method": {"name": "ce"}}
    other = {"seed": 1, "config": cfg}
    (run_dir / "results.json").write_text(json.dumps(other))
    results = tmp_path / "results" / "smoke"
    assert run_status(spec, results, tmp_path / "runs") == "collect"
    status, info = execute(spec, results, tmp_path / "runs")
    assert status == "failed" and "seed=1 (expected 0)" in info["note"]["log_tail"]
    assert not (results / "ce__sym40__seed0.json").exists()


def test_strong_view_settings_split_cells_only_for_methods_that_draw_strong_views(tmp_path):
    from noisyfit.bench.aggregate import config_diff, fingerprint
    from noisyfit.bench.files import StoredRun

    def run(method, seed, **train):
        cfg = {"method": {"name": method, "args": {}}, "train": {"seed": seed, "epochs": 12, **train}}
        return StoredRun("s", method, "worst", seed, tmp_path / "x.json", {"config": cfg})

    # a run stored before train.strong_draw existed vs one with the new default
    old_ce, new_ce = run("ce", 0), run("ce", 1, strong_draw="image", strong_policy="randaugment")
    assert fingerprint(old_ce) == fingerprint(new_ce)  # CE never draws strong views: same measurement
    old_jump, new_jump = run("jump_teaching", 0), run("jump_teaching", 1, strong_draw="image")
    assert fingerprint(old_jump) != fingerprint(new_jump)  # the older run drew one policy per batch
    assert config_diff(old_jump, new_jump) == ['train.strong_draw="image"']
    assert fingerprint(old_jump) == fingerprint(run("jump_teaching", 2, strong_draw="batch"))
    # options added later with a default that keeps the old behaviour: stored with their defaults, the run
    # still pools with one stored before they existed; set otherwise, it is its own variant
    later = dict(strong_draw="batch", flip="random", ema="none", eval_tta="none", track_fit=False)
    assert fingerprint(old_jump) == fingerprint(run("jump_teaching", 3, **later))
    assert config_diff(old_jump, run("jump_teaching", 4, **dict(later, ema="lookahead"))) == ['train.ema="lookahead"']
    # how the machine fed and ran it (decoding workers, memory budget, threads) is not the measurement
    fed = run("jump_teaching", 5, threads=1)
    fed.data["config"]["data"] = {"workers": 2, "memory_budget_mb": 4096}
    assert fingerprint(old_jump) == fingerprint(fed)


@pytest.mark.parametrize("suite", ["cpu-cifar10n", "paper-cifar10n"])
def test_every_built_in_method_has_a_preset_for_each_cifar_suite(suite):
    # A method without one is skipped by the bench with only a note (ELR+ once was: its presets sat
    # under elr/), so the table would silently miss a row.
    from noisyfit.methods.base import get_method_class

    for method in plan_mod.runnable_methods():
        config, _ = resolve_config(SUITES[suite], method)
        cfg = load_config(config)
        assert cfg.method.name == method, (config, cfg.method.name)
        get_method_class(method).resolve_hyper(cfg.method.args)  # every arg is a known hyper-parameter


def test_a_cut_run_whose_own_epochs_are_slower_than_the_guess_is_estimated_at_its_own_pace(tmp_path):
    spec = _smoke_spec()
    runs = tmp_path / "runs"
    run_dir = spec.run_dir(runs)
    run_dir.mkdir(parents=True)
    (run_dir / "checkpoint.pt").write_bytes(b"")
    # 2 fast warm-up epochs, then 3 slow ones (train + eval: 300, 310, 290 s); 7 of 12 epochs to go
    secs = [(50, 5), (50, 5), (295, 5), (300, 10), (280, 10)]
    (run_dir / "metrics.jsonl").write_text("".join(
        json.dumps({"epoch": e, "num_epochs": 12, "train_seconds": t, "eval_seconds": v}) + "\n"
        for e, (t, v) in enumerate(secs)))
    est = Estimator()
    est.add("ce", 1200.0)  # the method's guess: 100 s per epoch, i.e. 700 s for 7 epochs
    assert run_estimate(est, spec, "resume", runs) == pytest.approx(7 * 300.0)  # median of the last 3
    est_slow = Estimator()
    est_slow.add("ce", 12000.0)  # a guess longer than the measured pace wins (the estimate errs long)
    assert run_estimate(est_slow, spec, "resume", runs) == pytest.approx(7000.0)
    assert run_estimate(Estimator(), spec, "resume", runs) == pytest.approx(2100.0)  # no guess at all


def test_run_child_beats_while_the_child_runs_and_stops_when_it_exits(tmp_path):
    beats = []
    cmd = [sys.executable, "-c", "import time; time.sleep(0.5)"]
    rc = runner_mod.run_child(cmd, tmp_path / "log", on_tick=lambda: beats.append(1), tick_seconds=0.1)
    assert rc == 0 and len(beats) >= 2  # one beat per 0.1 s of a child that lives 0.5 s or more
    n = len(beats)
    assert runner_mod.run_child([sys.executable, "-c", "raise SystemExit(3)"], tmp_path / "log",
                                on_tick=lambda: beats.append(1), tick_seconds=30.0) == 3
    assert len(beats) == n  # a child that exits before the first tick is never beaten for


def test_run_child_threads_sets_the_childs_torch_threads(tmp_path, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    probe = [sys.executable, "-c", "import os, torch; print('threads', torch.get_num_threads(), "
                                   "os.environ.get('OMP_NUM_THREADS'))"]
    assert runner_mod.run_child(probe, tmp_path / "one", threads=1) == 0
    assert "threads 1 1" in (tmp_path / "one").read_text()
    assert runner_mod.run_child(probe, tmp_path / "default") == 0
    assert "None" in (tmp_path / "default").read_text()  # no --threads: the environment is left alone


def test_the_long_suite_has_a_preset_for_every_row_it_plans():
    # cpu-cifar10n-long names its rows explicitly (issue 17's list): each needs its own preset, a variant
    # its variant preset, and every preset must inherit the long protocol (never the 12-epoch one).
    from noisyfit.bench.suites import SEED_METHODS
    from noisyfit.methods.base import get_method_class

    suite = SUITES["cpu-cifar10n-long"]
    named = {m for st in suite.stages for m in st.methods if not m.startswith("best:")}
    assert set(SEED_METHODS) <= named | {"plremix", "bkd"}
    protocol = load_config("protocols/cpu-cifar10n-long")
    for method in sorted(named):
        config, _ = resolve_config(suite, method)
        cfg = load_config(config)
        base = "ce" if method == "oracle" else method.partition("-")[0]
        assert cfg.method.name == base, (config, cfg.method.name)
        get_method_class(base).resolve_hyper(cfg.method.args)
        assert cfg.train.track_fit and cfg.data.train_subset == protocol.data.train_subset, config
        assert cfg.train.epochs == protocol.train.epochs, config


def test_planned_rows_are_the_suites_own():
    # the report lists planned rows without results: a suite that names its rows plans only those
    long = SUITES["cpu-cifar10n-long"].planned_rows()
    assert long[:3] == ["ce", ORACLE, "pemm"]
    assert {"car-lam05", "plremix-ownproto", "ce-clip5", "dividemix"} <= set(long)
    assert "sce" not in long and "best:2" not in long
    cpu = SUITES["cpu-cifar10n"].planned_rows()  # "*": every planned method, then the suite's variants
    assert {"sce", "elr_plus", "bkd-detach", CLEANLAB} <= set(cpu) and len(cpu) == len(set(cpu))


@pytest.mark.parametrize("suite,optimiser,epochs", [("cpu-cifar10n-airbench-fp32", "sgd", 10),
                                                    ("cpu-cifar10n-airbench-muon-fp32", "muon", 12)])
def test_each_row_of_the_airbench_suites_trains_under_its_suites_recipe(suite, optimiser, epochs):
    # every planned row (CE, the oracle, ELR, GCE, CE with label smoothing) resolves to a preset of the suite's
    # own protocol, in float32; only CE's label-smoothing row smooths
    for row in SUITES[suite].planned_rows():
        config, overrides = resolve_config(SUITES[suite], row)
        cfg = load_config(config, [*overrides, *SUITES[suite].overrides])
        assert (cfg.optim.name, cfg.train.epochs, cfg.train.precision) == (optimiser, epochs, "fp32"), row
        smoothing = float((cfg.method.args or {}).get("label_smoothing", 0.0))
        assert smoothing == (0.2 if row == "ce-ls" else 0.0), row
