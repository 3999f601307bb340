"""`noisyfit bench`: run a named suite, list the suites, or write the report."""

from __future__ import annotations

from pathlib import Path

DEFAULT_RESULTS = "benchmarks/results"
DEFAULT_RUNS = "runs/bench"
DEFAULT_REPORT = "benchmarks/RESULTS.md"


def register(sub) -> None:
    p = sub.add_parser(
        "bench", help="run a benchmark suite (methods x label sets x seeds), or `bench report`",
        description="`noisyfit bench --suite NAME` runs a suite one run per process, skipping finished runs "
                    "and resuming cut ones; `noisyfit bench report` writes RESULTS.md and plots from the "
                    "result files; `noisyfit bench list` shows the suites.")
    p.add_argument("action", nargs="?", choices=("run", "report", "list"), default="run")
    p.add_argument("--suite", help="a suite's name (`noisyfit bench list` shows them all), e.g. smoke, "
                                   "cpu-cifar10n, cpu-cifar10n-long")
    p.add_argument("--out", help=f"run: results folder (default {DEFAULT_RESULTS}); "
                                 f"report: the markdown file (default {DEFAULT_REPORT})")
    p.add_argument("--runs", default=DEFAULT_RUNS,
                   help=f"run folders (checkpoints etc.; default {DEFAULT_RUNS})")
    p.add_argument("--only", help="comma-separated methods to run (oracle and cleanlab included by name)")
    p.add_argument("--seeds", help="comma-separated seeds replacing every stage's seeds")
    p.add_argument("--label-sets", help="comma-separated label sets to run (e.g. worst); default: the suite's")
    p.add_argument("--dry-run", action="store_true",
                   help="print the plan, each run's status and the estimate")
    p.add_argument("--threads", type=int,
                   help="run: torch threads of each run process (default: one per core). On a machine shared "
                        "with other heavy processes give each its share, e.g. 1 for two benches on 2 cores: "
                        "processes whose threads ask for more cores than there are can each run several "
                        "times slower (benchmarks/results/contention.md)")
    p.add_argument("--allow-emulated-bf16", action="store_true",
                   help="run: run a bf16 suite even on a CPU without bf16 kernels (an AVX2-only x86 CPU), where "
                        "bf16 is emulated and each run takes many times its estimate; refused by default")
    p.add_argument("--results", default=DEFAULT_RESULTS, help="report: where the result files are")
    p.add_argument("--plots", help="report: plot folder (default: plots/ next to the report)")
    p.set_defaults(func=cmd_bench)


def _csv(text: str | None) -> list[str] | None:
    return None if not text else [t.strip() for t in text.split(",") if t.strip()]


def cmd_bench(args) -> int:
    from noisyfit.config import ConfigError

    if args.action == "list":
        from noisyfit.bench.suites import SUITES

        for s in SUITES.values():
            print(f"{s.name:<16} {s.description}")
        return 0
    if args.action == "report":
        from noisyfit.bench.report import write_report

        out = Path(args.out or DEFAULT_REPORT)
        path, n = write_report(Path(args.results), out, plots_dir=Path(args.plots) if args.plots else None)
        print(f"{path}: {n} result file(s)")
        return 0
    if not args.suite:
        raise ConfigError("bench: give --suite NAME (see `noisyfit bench list`) or `noisyfit bench report`")
    from noisyfit.bench.runner import run_suite
    from noisyfit.bench.suites import get_suite

    try:
        seeds = tuple(int(s) for s in _csv(args.seeds)) if args.seeds else None
    except ValueError:
        raise ConfigError(f"--seeds {args.seeds!r}: expected comma-separated integers, e.g. 0,1,2") from None
    if args.threads is not None and args.threads < 1:
        raise ConfigError(f"--threads {args.threads}: give a whole number of threads, 1 or more")
    only = set(_csv(args.only)) if args.only else None
    label_sets = set(_csv(args.label_sets)) if args.label_sets else None
    summary = run_suite(get_suite(args.suite), results_root=Path(args.out or DEFAULT_RESULTS),
                        runs_root=Path(args.runs), only=only, seeds=seeds, label_sets=label_sets,
                        dry_run=args.dry_run, threads=args.threads, allow_emulated_bf16=args.allow_emulated_bf16)
    if summary.terminated:
        return 143  # 128 + SIGTERM, as a shell reports it
    return 1 if summary.failed else 0
