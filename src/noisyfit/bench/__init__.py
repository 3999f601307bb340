"""The bench: named grids of methods x label sets x seeds, run one process at a time, and the report.

``noisyfit bench --suite NAME`` (see :mod:`noisyfit.bench.runner`) writes one JSON file per run to
``benchmarks/results/<suite>/``; ``noisyfit bench report`` (:mod:`noisyfit.bench.report`) turns them
into ``benchmarks/RESULTS.md`` and ``benchmarks/plots/``. Suites are data in
:mod:`noisyfit.bench.suites`.
"""

from noisyfit.bench.suites import SUITES, LabelSet, Stage, Suite, get_suite

__all__ = ["SUITES", "LabelSet", "Stage", "Suite", "get_suite"]
