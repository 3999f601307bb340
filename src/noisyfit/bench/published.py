"""Published CIFAR-10N test accuracies, kept apart from ours: other backbones, schedules and rules.

Transcribed from the project's survey (``shared/specs/anchors.md`` §3.2-3.3 and
``shared/specs/methods.md`` §8.5), which names the original sources. Only methods this toolkit
implements, plus ProMix as the state of the art, and only the label sets our suites run.
The report prints them in their own labelled tables, never in a column next to our numbers.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PublishedTable:
    title: str
    source: str
    backbone: str
    selection: str
    seeds: str
    columns: tuple[str, ...]  # label-set names, as in our suites
    rows: tuple[tuple[str, tuple[str, ...]], ...]


CIFAR10N_PUBLISHED: tuple[PublishedTable, ...] = (
    PublishedTable(
        title="CIFAR-N leaderboard (as reported by the papers)",
        source="CIFAR-N paper table as reproduced in the ProMix README figure (result_cfn.png); Co-teaching "
               "from the Papers-with-Code mirror (transcribed in the team's notes outside this repository: "
               "shared/specs/anchors.md §3.2, methods.md §8.5)",
        backbone="ResNet-34 for the CIFAR-N baselines; ProMix trains two PreAct ResNet-18",
        selection="best epoch by test accuracy", seeds="5",
        columns=("aggre", "worst"),
        rows=(("CE", ("87.77 ± 0.38", "77.69 ± 1.55")),
              ("Co-teaching", ("91.20 ± 0.13", "83.83")),
              ("ELR+", ("94.83 ± 0.10", "91.09 ± 1.60")),
              ("DivideMix", ("95.01 ± 0.71", "92.56 ± 0.42")),
              ("ProMix", ("97.65 ± 0.19", "96.34 ± 0.23"))),
    ),
    PublishedTable(
        title="ReScience re-run with each method's original configs",
        source="ReScience reproduction of CIFAR-N (README and rescience/tables/*.tex; the team's notes: "
               "shared/specs/anchors.md §3.3(a))",
        backbone="the authors' CIFAR ResNet", selection="best epoch by test accuracy", seeds="3",
        columns=("aggre", "worst"),
        rows=(("CE", ("91.70", "83.91")), ("Co-teaching", ("91.93", "80.92")), ("ELR+", ("95.32", "91.75")),
              ("DivideMix", ("95.62", "93.10"))),
    ),
    PublishedTable(
        title="ReScience 'fair benchmark' (closest to our protocol's selection rule)",
        source="ReScience reproduction of CIFAR-N (the team's notes: shared/specs/anchors.md §3.3(b))",
        backbone="torchvision ResNet-34", selection="checkpoint with the best noisy-validation accuracy",
        seeds="3", columns=("aggre", "worst"),
        rows=(("CE", ("83.50", "75.48")), ("DivideMix", ("89.36", "86.82")), ("SOP+", ("89.50", "85.18")),
              ("ProMix", ("90.72", "88.99"))),
    ),
)
