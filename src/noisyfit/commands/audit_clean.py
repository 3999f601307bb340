"""`noisyfit audit --clean ...`: the options, and OUT/cleaned_labels.npz for `noisyfit train --noisy-labels`."""

from __future__ import annotations

import shlex
from pathlib import Path

import numpy as np

CLEANED_FILE = "cleaned_labels.npz"


def add_clean_options(p) -> None:
    from noisyfit.detect.clean import ACTIONS, DEFAULT_THRESHOLD

    g = p.add_argument_group(f"cleaned labels (OUT/{CLEANED_FILE}, for `noisyfit train --noisy-labels`)")
    g.add_argument("--clean", choices=(*ACTIONS, "none"), default=None,
                   help="what happens to the flagged examples: relabel-or-drop (default) relabels those whose "
                        "suggested label has at least --clean-threshold probability and drops the rest; relabel "
                        "relabels all of them; drop drops all of them; none writes no file")
    g.add_argument("--clean-threshold", type=float, default=None, metavar="P",
                   help=f"relabel-or-drop: the detector's least probability of its suggestion that relabels "
                        f"(default {DEFAULT_THRESHOLD})")


def write_cleaned_labels(args, out: Path, issues, labelled, keep: np.ndarray | None, data_name: str | None,
                         log, label_column: str | None = None) -> dict | None:
    """Write OUT/cleaned_labels.npz; returns its summary for summary.json (None when not written).

    With ``--clean`` left at its default a detector that cannot support the default (no probabilities,
    no data set loaded) only costs the file, with a note; an explicit ``--clean`` makes it an error.
    """
    from noisyfit.data.labeled import DataError
    from noisyfit.data.noise import save_noisy_labels
    from noisyfit.detect.clean import clean_labels

    explicit = args.clean is not None or args.clean_threshold is not None
    action = args.clean or "relabel-or-drop"
    if action == "none":
        return None
    try:
        if labelled is None:
            raise DataError(f"the audited data set {data_name!r} was not loaded, so the rows the audit did not "
                            "see have no labels to write")
        cleaning = clean_labels(issues, labelled, action=action, threshold=args.clean_threshold, keep=keep)
    except DataError as err:
        if explicit:
            raise
        log(f"note: {CLEANED_FILE} not written: {err}")
        return None
    path = save_noisy_labels(out / CLEANED_FILE, cleaning.result, data_name or labelled.name)
    s = cleaning.summary()
    log(f"{path}: {s['relabelled']} relabelled, {s['dropped']} dropped, {s['unchanged']} flagged but kept as "
        f"given ({s['spec']}); train on it with `noisyfit train --dataset {shlex.quote(data_name or 'DATA')} "
        f"--noisy-labels {shlex.quote(str(path))}"
        # a CSV's other label column: the train command needs it too
        + (f" --label-column {shlex.quote(label_column)}`" if label_column not in (None, "label") else "`")
        + ("" if data_name else " (DATA: the data set these embeddings were made from)"))
    return {**s, "file": CLEANED_FILE}
