"""Run a suite: one run at a time, each in its own process, skipping done runs and resuming cut ones.

Each run is ``python -m noisyfit.cli train ... --out <runs>/<suite>/<method>/<label set>/seed<S>`` in
a fresh process, so its peak RSS is its own and a crash or a kill loses at most one epoch. A run is
done when ``<results>/<suite>/<key>.json`` exists; a run folder with ``checkpoint.pt`` and no
``results.json`` is resumed with ``--resume``; a finished run whose copy is missing is only copied.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from noisyfit.bench.cleanlab_row import unavailable_reason
from noisyfit.bench.evidence import collect_run
from noisyfit.bench.files import read_suite
from noisyfit.bench.plan import RunSpec, StagePlan, expand_suite, runnable_methods
from noisyfit.bench.suites import CLEANLAB, COST_GUESS, Suite, split_variant
from noisyfit.config import ConfigError
from noisyfit.engine.checkpoint import atomic_write_json

#: cost (relative to CE) assumed for a method that is neither measured nor in COST_GUESS
DEFAULT_COST = 2.0
LOG_TAIL_LINES = 25
SESSIONS_FILE = "bench-sessions.jsonl"  # one record per session of a run: its wall time and exit code
LIVE_SESSION_FILE = "bench-session.live.json"  # the running session's heartbeat; folded in if it was killed
HEARTBEAT_SECONDS = 30.0


def fmt_duration(seconds: float | None) -> str:
    """``12s``, ``4m05s``, ``3h12m``; ``?`` when unknown."""
    if seconds is None:
        return "?"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


class Estimator:
    """Time left, from the wall times of finished runs of the same suite.

    A method with finished runs is estimated by their mean; one without, by the suite's measured
    CE-equivalent time scaled by the method's guessed relative cost (``COST_GUESS``). Before any run
    has finished, the suite's guessed CE time stands in for the measured one.
    """

    def __init__(self, ce_seconds_guess: float | None = None) -> None:
        self.seconds: dict[str, list[float]] = {}
        self.ce_seconds_guess = ce_seconds_guess
        #: the CPU capabilities (AVX2, AVX512, ...) of the machines the measured times come from, where
        #: their result files say (files written before machines recorded it do not)
        self.capabilities: set[str] = set()

    @classmethod
    def from_results(cls, suite_dir: Path, ce_seconds_guess: float | None = None) -> "Estimator":
        est = cls(ce_seconds_guess)
        for r in read_suite(suite_dir):
            wall = (r.data.get("bench") or {}).get("wall_seconds")
            if wall:
                est.add(r.method, float(wall))
                capability = (r.data.get("machine") or {}).get("cpu_capability")
                if capability:
                    est.capabilities.add(capability)
        return est

    def machine_note(self) -> str | None:
        """A caution when the measured times come from CPUs of another kind than this one."""
        import torch

        here = torch.backends.cpu.get_cpu_capability()
        if not self.capabilities or self.capabilities == {here}:
            return None
        return (f"the measured times come from machines where torch saw {', '.join(sorted(self.capabilities))}; "
                f"here it sees {here}, so expect other times")

    def add(self, method: str, seconds: float) -> None:
        self.seconds.setdefault(method, []).append(seconds)

    def estimate(self, method: str) -> float | None:
        if method in self.seconds:
            v = self.seconds[method]
            return sum(v) / len(v)
        base, variant = split_variant(method)
        if variant is not None:  # a variant costs what its base method costs
            return self.estimate(base)
        if not self.seconds:
            if self.ce_seconds_guess is None:
                return None
            return self.ce_seconds_guess * COST_GUESS.get(method, DEFAULT_COST)
        ce_equiv = [sum(v) / len(v) / COST_GUESS.get(m, DEFAULT_COST) for m, v in self.seconds.items()]
        return sum(ce_equiv) / len(ce_equiv) * COST_GUESS.get(method, DEFAULT_COST)


def epochs_done(run_dir: Path) -> tuple[int, int] | None:
    """(finished epochs, planned epochs) of a cut run, from its ``metrics.jsonl``; None when unknown.

    A resumed trainer rewrites that file with the checkpoint's history, so its rows are the epochs
    that will not be redone (an epoch cut in the middle counts as not started: the estimate errs long).
    """
    rows = _epoch_rows(run_dir)
    try:
        return (len(rows), int(rows[-1]["num_epochs"])) if rows else None
    except (ValueError, KeyError, TypeError):
        return None


def _epoch_rows(run_dir: Path) -> list[dict]:
    """The per-epoch rows of a run's ``metrics.jsonl`` ([] when missing or unreadable)."""
    try:
        return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    except (OSError, ValueError):
        return []


def measured_seconds_left(run_dir: Path, recent: int = 3) -> float | None:
    """Seconds a cut run still needs at the pace of its own latest epochs (median of the last ``recent``
    epochs' train + eval seconds, times the epochs to go); None without a finished epoch."""
    rows = _epoch_rows(run_dir)
    try:
        last = sorted(float(r["train_seconds"]) + float(r.get("eval_seconds") or 0.0) for r in rows[-recent:])
        left = int(rows[-1]["num_epochs"]) - len(rows)
    except (ValueError, KeyError, TypeError, IndexError):
        return None
    return last[len(last) // 2] * max(left, 0) if last else None


def run_estimate(est: Estimator, spec: RunSpec, status: str, runs_root: Path) -> float | None:
    """Seconds left for one run: the method's estimate, scaled by the epochs a cut run still has to go.

    A cut run's own latest epochs are also a measurement: when they say it is slower (e.g. a method whose
    epochs after warm-up cost more than its guessed average), the longer of the two estimates is used.
    """
    full = est.estimate(spec.method)
    if status != "resume":
        return full
    run_dir = spec.run_dir(runs_root)
    done = epochs_done(run_dir)
    scaled = full if full is None or done is None or done[1] <= 0 else full * max(done[1] - done[0], 0) / done[1]
    measured = measured_seconds_left(run_dir)
    if scaled is None or measured is None:
        return scaled if measured is None else measured
    return max(scaled, measured)


def _progress_text(spec: RunSpec, status: str, runs_root: Path) -> str:
    done = epochs_done(spec.run_dir(runs_root)) if status == "resume" else None
    return f" at epoch {done[0]}/{done[1]}" if done else ""


def time_left(est: Estimator, specs: list[RunSpec], undecided: int, results_dir: Path,
              runs_root: Path) -> float | None:
    """Estimated seconds for ``specs`` (cut runs: their remaining epochs) plus ``undecided`` runs of
    methods not chosen yet; None when any part is unknown."""
    parts = [run_estimate(est, r, run_status(r, results_dir, runs_root), runs_root) for r in specs]
    parts += [est.estimate("?")] * undecided
    return None if any(p is None for p in parts) else sum(parts)


@dataclass
class BenchSummary:
    ran: list[str] = field(default_factory=list)
    collected: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    unavailable: list[str] = field(default_factory=list)
    #: held by another bench process sharing the suite (see run_lock)
    busy: list[str] = field(default_factory=list)
    #: stopped by SIGTERM before the plan was through
    terminated: bool = False


class _Terminated(Exception):
    """SIGTERM reached the bench: stop the current run (its checkpoint stays) and exit."""


@contextmanager
def _sigterm_stops():
    # `kill <bench pid>` should not leave a child training on its own (a later bench would then
    # race it on the same run folder): turn SIGTERM into an exception that stops the child.
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise _Terminated()

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


class RunLocked(Exception):
    """The run is held by another live bench process (``pid``, when it recorded one)."""

    def __init__(self, pid: int | None) -> None:
        super().__init__(pid)
        self.pid = pid


RUN_LOCK_FILE = ".bench-run.lock"


@contextmanager
def run_lock(run_dir: Path):
    """Hold ``run_dir`` for this process, so several ``noisyfit bench`` processes can share one suite (say one
    per GPU, or a slow method beside the cheap ones): each runs what the others do not hold.

    An advisory ``flock`` on ``run_dir/.bench-run.lock``: the kernel releases it when the holder exits,
    however it ends, so a killed bench never leaves a stale lock behind. The file keeps the holder's pid
    for the message. Raises :class:`RunLocked` when another process holds it.
    """
    import fcntl

    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / RUN_LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        try:
            pid = int(os.read(fd, 32).decode().strip() or 0) or None
        except ValueError:
            pid = None
        os.close(fd)
        raise RunLocked(pid) from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock; the file stays (unlinking it would race with a waiting opener)


def run_child(cmd: list[str], log_path: Path, on_tick: Callable[[], None] | None = None,
              tick_seconds: float = HEARTBEAT_SECONDS, threads: int | None = None) -> int:
    """Run ``cmd`` with its output appended to ``log_path``; on interrupt stop it and re-raise.

    ``on_tick`` is called every ``tick_seconds`` while the child runs (the session heartbeat).
    ``threads`` caps the child's intra-op threads (OMP_NUM_THREADS, read by torch when it loads): a
    machine setting, not part of the run's config, recorded in its results' machine block.
    """
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if threads is not None:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    with open(log_path, "a") as log:
        log.write(f"\n$ {shlex.join(cmd)}\n")
        log.flush()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        try:
            while True:
                try:
                    return proc.wait(timeout=tick_seconds)
                except subprocess.TimeoutExpired:
                    if on_tick is not None:
                        on_tick()
        except BaseException:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            raise


def _log_tail(log_path: Path, n: int = LOG_TAIL_LINES) -> str:
    try:
        return "\n".join(log_path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def _append_session(run_dir: Path, record: dict) -> None:
    with open(run_dir / SESSIONS_FILE, "a") as f:
        f.write(json.dumps(record) + "\n")


def _fold_in_lost_session(run_dir: Path) -> None:
    """A session whose bench process was killed outright (SIGKILL, the machine stopping) never wrote its
    record; its heartbeat file survives and holds its time up to the last beat, so count that (a lower
    bound, short by at most one heartbeat) rather than nothing."""
    live = run_dir / LIVE_SESSION_FILE
    if not live.is_file():
        return
    try:
        record = json.loads(live.read_text())
    except (OSError, json.JSONDecodeError):
        record = None
    if record:
        _append_session(run_dir, dict(record, returncode=None, lost=True))
    live.unlink(missing_ok=True)


def _sessions(run_dir: Path) -> list[dict]:
    p = run_dir / SESSIONS_FILE
    if not p.is_file():
        return []
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


def _clear_stale(run_dir: Path) -> None:
    """Remove what a run that died before its first checkpoint left (metrics.jsonl is appended to)."""
    for child in run_dir.iterdir():
        if child.name in ("bench.log", RUN_LOCK_FILE):  # the lock: this process holds it (see run_lock)
            continue
        shutil.rmtree(child) if child.is_dir() else child.unlink()


def _bench_block(spec: RunSpec, run_dir: Path, sessions: list[dict]) -> dict:
    ls = spec.label_set
    return {"suite": spec.suite, "method": spec.method, "trained_method": spec.trained_method,
            "label_set": ls.name, "dataset": ls.dataset, "noise": ls.noise, "clean_labels": ls.clean,
            "seed": spec.seed, "stage": spec.stage + 1, "config": spec.config,
            "overrides": list(spec.overrides),
            "run_dir": str(run_dir), "sessions": len(sessions),
            "resumed": any(s.get("resume") for s in sessions),
            # wall time of every session of this run, including start-up, data loading and evaluation
            "wall_seconds": sum(s["wall_seconds"] for s in sessions) if sessions else None}


def mismatch(spec: RunSpec, results: dict) -> str | None:
    """Why a finished run folder does not hold ``spec``'s run (e.g. a folder copied in by hand), or None."""
    cfg = results.get("config") or {}
    data, method = cfg.get("data") or {}, cfg.get("method") or {}
    want = {"seed": spec.seed, "data.dataset": spec.label_set.dataset.lower(),
            "data.noise": spec.label_set.noise, "method.name": spec.trained_method}
    have = {"seed": results.get("seed"), "data.dataset": str(data.get("dataset", "")).lower(),
            "data.noise": data.get("noise"), "method.name": method.get("name")}
    diff = [f"{k}={have[k]!r} (expected {want[k]!r})" for k in want if have[k] != want[k]]
    return "; ".join(diff) if diff else None


def run_status(spec: RunSpec, results_dir: Path, runs_root: Path) -> str:
    """``done`` | ``collect`` (finished, not copied) | ``resume`` | ``todo``."""
    if (results_dir / f"{spec.key}.json").is_file():
        return "done"
    run_dir = spec.run_dir(runs_root)
    if (run_dir / "results.json").is_file():
        return "collect"
    if spec.method != CLEANLAB and (run_dir / "checkpoint.pt").is_file():
        return "resume"
    # the cleanlab row keeps each finished out-of-fold fold (folds/fold<k>.npz) and starts at the first
    # missing one: a cut row is resumed, never cleared as stale
    if spec.method == CLEANLAB and any((run_dir / "folds").glob("fold*.npz")):
        return "resume"
    return "todo"


def execute(spec: RunSpec, results_dir: Path, runs_root: Path, *,
            python: str = sys.executable, threads: int | None = None) -> tuple[str, dict]:
    """Run (or resume, or only copy) one run; return ``(status, info)``.

    status is ``ran``, ``collected``, ``failed``, ``unavailable`` or ``skipped`` (results already
    there); info holds ``seconds``, ``results`` (when finished) and ``note`` (failed / unavailable).
    """
    dest = results_dir / f"{spec.key}.json"
    run_dir = spec.run_dir(runs_root)
    notes = {k: results_dir / f"{spec.key}.{k}.json" for k in ("failed", "unavailable")}
    status = run_status(spec, results_dir, runs_root)
    if status == "done":
        return "skipped", {}
    if spec.method == CLEANLAB and status == "todo":
        reason = unavailable_reason()
        if reason:
            note = {"reason": reason, "checked": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
            atomic_write_json(notes["unavailable"], note)
            return "unavailable", {"note": note}
    seconds = 0.0
    if status in ("todo", "resume"):
        run_dir.mkdir(parents=True, exist_ok=True)
        if status == "todo":
            _clear_stale(run_dir)
        _fold_in_lost_session(run_dir)
        cmd = spec.command(run_dir, resume=status == "resume", python=python)
        t0 = time.time()
        rc = None
        record = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(t0)), "wall_seconds": 0.0,
                  "resume": status == "resume", "command": cmd}

        def beat() -> None:
            atomic_write_json(run_dir / LIVE_SESSION_FILE, dict(record, wall_seconds=time.time() - t0))

        beat()
        try:
            rc = run_child(cmd, run_dir / "bench.log", on_tick=beat, threads=threads)
        finally:
            # An interrupted session is recorded too (returncode null): its time is part of the run's cost.
            seconds = time.time() - t0
            _append_session(run_dir, dict(record, wall_seconds=seconds, returncode=rc))
            (run_dir / LIVE_SESSION_FILE).unlink(missing_ok=True)
        if rc != 0 or not (run_dir / "results.json").is_file():
            note = {"returncode": rc, "command": cmd, "run_dir": str(run_dir), "seconds": seconds,
                    "failed": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "log_tail": _log_tail(run_dir / "bench.log")}
            atomic_write_json(notes["failed"], note)
            return "failed", {"seconds": seconds, "note": note}
    wrong = mismatch(spec, json.loads((run_dir / "results.json").read_text()))
    if wrong:
        note = {"returncode": None, "run_dir": str(run_dir), "failed": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "log_tail": f"{run_dir} holds another run: {wrong}; move it away to run this one"}
        atomic_write_json(notes["failed"], note)
        return "failed", {"seconds": seconds, "note": note}
    _fold_in_lost_session(run_dir)  # a session killed after its results were written
    results = collect_run(run_dir, dest, _bench_block(spec, run_dir, _sessions(run_dir)))
    for p in notes.values():
        p.unlink(missing_ok=True)
    return ("ran" if status in ("todo", "resume") else "collected"), {"seconds": seconds, "results": results}


def _describe(spec: RunSpec) -> str:
    return f"{spec.method} · {spec.label_set.name} · seed {spec.seed}"


def _acc_text(results: dict) -> str:
    acc = (results.get("selected") or {}).get("test_acc")
    if acc is not None:
        return f"selected test acc {100 * acc:.2f}%"
    det = results.get("detection") or {}
    return f"F1 {100 * det['f1']:.1f}%" if det.get("f1") is not None else "no accuracy"


def emulated_bf16_note(specs: list[RunSpec]) -> str | None:
    """Why these runs would crawl here: some train in bf16 on the CPU, and this CPU has no bf16 kernels.

    The estimate comes from runs on machines with them; here bf16 is emulated (see
    :func:`noisyfit.engine.precision.cpu_bf16_kernels`). None when no run is affected."""
    import torch

    from noisyfit.config import load_config
    from noisyfit.engine.precision import cpu_bf16_kernels
    from noisyfit.engine.trainer import resolve_device, resolve_precision

    if not specs or cpu_bf16_kernels() is not False:
        return None
    slow = []
    for spec in specs:
        cfg = load_config(spec.config, list(spec.overrides))
        device = resolve_device(cfg.train.device)
        if resolve_precision(cfg.train.precision, device) == "bf16" and device.type == "cpu":
            slow.append(spec)
    if not slow:
        return None
    return (f"{len(slow)} of {len(specs)} run(s) to do train in bf16 on the CPU, and this CPU has no bf16 "
            f"kernels (torch sees {torch.backends.cpu.get_cpu_capability()}): bf16 is emulated here, many "
            "times slower than the estimates (benchmarks/PRECISION_SPEED.md).")


def run_suite(suite: Suite, *, results_root: Path, runs_root: Path, only: set[str] | None = None,
              seeds: tuple[int, ...] | None = None, label_sets: set[str] | None = None, dry_run: bool = False,
              echo: Callable[[str], None] = print, python: str = sys.executable,
              registered: list[str] | None = None, threads: int | None = None,
              allow_emulated_bf16: bool = False) -> BenchSummary:
    """Run every stage of ``suite`` in order (see :mod:`noisyfit.bench.suites`).

    Parameters
    ----------
    suite : Suite
    results_root, runs_root : Path
        ``<results_root>/<suite>/`` gets the JSON files; ``<runs_root>/<suite>/`` the run folders.
    only : set of str, optional
        Run only these methods (``oracle`` and ``cleanlab`` included by name).
    seeds : tuple of int, optional
        Replace the seeds of every stage.
    label_sets : set of str, optional
        Run only on these label sets (e.g. ``{"worst"}``).
    dry_run : bool
        Print the plan (with each run's status and the time estimate) and run nothing.
    echo : callable
        Where progress lines go.
    python : str
        Interpreter for the run processes.
    registered : list of str, optional
        The methods that exist (default :func:`noisyfit.bench.plan.runnable_methods`).
    threads : int, optional
        Intra-op threads of each run process (default: torch's, one per core). Set it when several
        heavy processes share the machine, e.g. 1 for two benches on 2 cores (see :func:`run_child`).
    allow_emulated_bf16 : bool
        Run bf16 runs even on a CPU without bf16 kernels (see :func:`emulated_bf16_note`); by default the
        bench refuses, as such a run takes many times its estimate.
    """
    if registered is None:
        registered = runnable_methods()
    results_dir = Path(results_root) / suite.name
    runs_root = Path(runs_root)
    est = Estimator.from_results(results_dir, suite.ce_seconds_guess)
    summary = BenchSummary()
    kw = dict(registered=registered, results_root=Path(results_root), only=only, seeds=seeds,
              label_sets=label_sets)
    plans = expand_suite(suite, **kw)
    slow = emulated_bf16_note([r for p in plans for r in p.runs
                               if run_status(r, results_dir, runs_root) != "done"])
    if dry_run:
        _print_plan(suite, plans, results_dir, runs_root, est, echo)
        if slow:
            echo(f"warning: {slow}")
        return summary
    if slow and not allow_emulated_bf16:
        raise ConfigError(f"bench {suite.name}: {slow} Run it on a machine with bf16 kernels, or pass "
                          "--allow-emulated-bf16 to run here anyway (the arithmetic is the same, the time is not).")

    echo(f"bench {suite.name}: {suite.description}")
    try:
        _run_stages(suite, kw, results_dir, runs_root, est, summary, echo, python, threads)
    except _Terminated:
        summary.terminated = True
        echo(f"bench {suite.name}: terminated; the run in progress keeps its last checkpoint. "
             "Start the same command again to continue.")
        return summary
    echo(f"bench {suite.name}: {len(summary.ran)} ran, {len(summary.collected)} collected, "
         f"{len(summary.skipped)} already done, {len(summary.failed)} failed, "
         f"{len(summary.unavailable)} unavailable"
         + (f", {len(summary.busy)} left to another bench process" if summary.busy else "")
         + f". Results: {results_dir}")
    return summary


def _run_stages(suite: Suite, kw: dict, results_dir: Path, runs_root: Path, est: Estimator,
                summary: BenchSummary, echo: Callable[[str], None], python: str,
                threads: int | None = None) -> None:
    shown_notes: set[str] = set()

    def show_notes(plans: list[StagePlan]) -> None:
        for p in plans:
            for n in p.notes:
                if n not in shown_notes:
                    shown_notes.add(n)
                    echo(f"note: {n}")

    visited: set[str] = set()
    counter = 0
    with _sigterm_stops():
        for i in range(len(suite.stages)):
            # Re-expanded at each stage: best:K ranks the results that have landed meanwhile.
            plans = expand_suite(suite, start=i, **kw)
            stage = plans[0]
            if any(r.key not in visited for r in stage.runs) or stage.notes:
                st = suite.stages[i]
                # --seeds replaces every stage's seeds: the stage's own note may name others
                given = kw.get("seeds")
                also = f" [seeds as given: {', '.join(map(str, given))}]" if given else ""
                echo(f"-- stage {i + 1}/{len(suite.stages)}: {st.note or ', '.join(st.methods)}{also}")
            show_notes(plans[:1])
            for spec in stage.runs:
                if spec.key in visited:
                    continue
                visited.add(spec.key)
                counter += 1
                pending = [r for p in plans for r in p.runs if r.key not in visited
                           and run_status(r, results_dir, runs_root) != "done"]
                total = counter + len({r.key for p in plans for r in p.runs} - visited) \
                    + sum(p.undecided for p in plans)
                tag = f"[{counter:>{len(str(total))}}/{total}] {_describe(spec)}"
                status = run_status(spec, results_dir, runs_root)
                if status == "done":
                    summary.skipped.append(spec.key)
                    echo(f"{tag}: have results, skip")
                    continue
                try:
                    with run_lock(spec.run_dir(runs_root)):
                        # the other bench may have finished it since the check above
                        status = run_status(spec, results_dir, runs_root)
                        if status == "done":
                            summary.skipped.append(spec.key)
                            echo(f"{tag}: have results, skip")
                            continue
                        can_run = not (spec.method == CLEANLAB and status == "todo" and unavailable_reason())
                        if status in ("todo", "resume") and can_run:
                            doing = ("resuming" + _progress_text(spec, status, runs_root) if status == "resume"
                                     else "running")
                            left_here = run_estimate(est, spec, status, runs_root)
                            echo(f"{tag}: {doing} (about {fmt_duration(left_here)})")
                        outcome, info = execute(spec, results_dir, runs_root, python=python, threads=threads)
                except RunLocked as held:
                    summary.busy.append(spec.key)
                    who = f" (pid {held.pid})" if held.pid else ""
                    echo(f"{tag}: another bench process{who} is running it, skip")
                    continue
                getattr(summary, outcome).append(spec.key)
                if outcome == "ran":
                    wall = info["results"]["bench"]["wall_seconds"]
                    if wall:
                        est.add(spec.method, float(wall))
                left = time_left(est, pending, sum(p.undecided for p in plans), results_dir, runs_root)
                eta = f" · about {fmt_duration(left)} left for {len(pending)} run(s)" if pending else ""
                if outcome in ("ran", "collected"):
                    echo(f"{tag}: {outcome} in {fmt_duration(info['seconds'])}, {_acc_text(info['results'])}"
                         f"{eta}")
                elif outcome == "failed":
                    echo(f"{tag}: FAILED (exit {info['note']['returncode']}); log: "
                         f"{spec.run_dir(runs_root) / 'bench.log'}; last lines:\n"
                         + "\n".join("    " + s for s in info["note"]["log_tail"].splitlines()[-8:]) + eta)
                else:
                    echo(f"{tag}: unavailable: {info['note']['reason']}{eta}")


def _print_plan(suite: Suite, plans: list[StagePlan], results_dir: Path, runs_root: Path, est: Estimator,
                echo: Callable[[str], None]) -> None:
    echo(f"bench {suite.name} (dry run): {suite.description}")
    cleanlab_reason = unavailable_reason()
    seen: set[str] = set()
    todo: list[RunSpec] = []
    undecided = 0
    for p in plans:
        stage = suite.stages[p.index]
        echo(f"-- stage {p.index + 1}/{len(suite.stages)}: {stage.note or ', '.join(stage.methods)}")
        for n in p.notes:
            echo(f"   note: {n}")
        for r in p.runs:
            if r.key in seen:
                continue
            seen.add(r.key)
            st = run_status(r, results_dir, runs_root)
            if st == "todo" and r.method == CLEANLAB and cleanlab_reason:
                echo(f"   {'unavail':<8} {_describe(r):<40} {cleanlab_reason}")
                continue
            if st != "done":
                todo.append(r)
            echo(f"   {st:<8} {_describe(r):<40} ~{fmt_duration(run_estimate(est, r, st, runs_root)):>7}  "
                 f"{shlex.join(r.command(r.run_dir(runs_root), resume=st == 'resume'))}")
        if p.undecided:
            echo(f"   (+{p.undecided} run(s) of methods chosen when earlier stages have results)")
            undecided += p.undecided
    total = time_left(est, todo, undecided, results_dir, runs_root)
    basis = ("measured run times" if est.seconds else
             "a guessed CE time x guessed method costs" if est.ce_seconds_guess else "")
    echo(f"{len(todo) + undecided} run(s) to go; estimated {fmt_duration(total)}"
         + (f" (from {basis})" if total is not None
            else " (unknown until one run of this suite has finished)"))
    if est.machine_note():
        echo(f"note: {est.machine_note()}")
