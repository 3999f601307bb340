"""How wrong are the labels a consensus keeps although most annotators did not give them?

The annotator audit (``noisyfit audit DATA --annotators ...``) flags an item when the consensus differs from its
given label, and lists in ``review.csv`` the items it keeps although at most half of their annotators gave the
label. This measures, on CIFAR-10N's labels alone (no images, no training: seconds), how many wrong labels each
list holds: CIFAR-10N's three annotators random1..3 audit the label sets worst, aggre and random1, with each
consensus (the built-in Dawid-Skene EM and majority vote), scored against the clean CIFAR-10 labels on all 50,000
training images.

    python benchmarks/annotator_review.py     # writes benchmarks/results/audit/annotator-review-v2.json
    python benchmarks/audit_report.py --table-only   # then AUDIT.md shows it

Version 2 (``annotator-review-v2.json``) adds, for the items to review, how often their suggestion (the best
alternative to the kept label) is the true label; ``annotator-review.json`` (version 1, before review items had
an alternative) stays as committed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from measurement import provenance  # noqa: E402

OUT = HERE / "results" / "audit" / "annotator-review-v2.json"
LABEL_SETS = {"worst": "worse_label", "aggre": "aggre_label", "random1": "random_label1"}


def measure(data_dir: Path) -> dict:
    from noisyfit.data.cifarn import load_cifar_n_labels
    from noisyfit.detect import consensus_issues

    labels = load_cifar_n_labels("cifar10n", data_dir)
    ann = {f"random{k}": labels[f"random_label{k}"] for k in (1, 2, 3)}
    clean = np.asarray(labels["clean_label"])
    rows = []
    for name, key in LABEL_SETS.items():
        given = np.asarray(labels[key])
        wrong = given != clean
        for consensus in ("dawid_skene", "majority_vote"):
            issues = consensus_issues(ann, given=given, method=consensus, backend="builtin", true_labels=clean)
            flag, review = issues.is_issue, issues.review
            rest = ~flag & ~review
            rows.append({"label_set": name, "consensus": consensus, "examples": int(len(given)),
                         "wrong": int(wrong.sum()), "flagged": int(flag.sum()),
                         "flagged_wrong_share": float(wrong[flag].mean()) if flag.any() else None,
                         "review": int(review.sum()),
                         "review_wrong_share": float(wrong[review].mean()) if review.any() else None,
                         "rest": int(rest.sum()), "rest_wrong_share": float(wrong[rest].mean()),
                         "wrong_in_flagged": int((wrong & flag).sum()), "wrong_in_review": int((wrong & review).sum()),
                         "wrong_in_rest": int((wrong & rest).sum()),
                         # the suggestion of a review item is the best alternative to the label it keeps
                         "review_alternative_true_share": (float(np.mean(issues.suggested[review] == clean[review]))
                                                           if review.any() else None),
                         "review_wrong_alternative_true_share": (
                             float(np.mean(issues.suggested[review & wrong] == clean[review & wrong]))
                             if (review & wrong).any() else None)})
    return {"schema": "noisyfit.bench.annotator-review/2", **provenance("annotator-review"),
            "annotators": list(ann), "backend": "builtin", "rows": rows}


def main() -> int:
    from noisyfit.data.paths import resolve_data_dir

    data_dir = resolve_data_dir()
    if data_dir is None:
        raise SystemExit("no data folder: set $NOISYFIT_DATA_DIR to the folder holding cifar-n/CIFAR-10_human.pt")
    if OUT.exists():
        raise SystemExit(f"{OUT} exists (a committed result is never replaced); move it first to measure again")
    result = measure(data_dir)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=1) + "\n")
    for r in result["rows"]:
        print(f"{r['label_set']:8s} {r['consensus']:13s} flagged {r['flagged']:6d} ({r['flagged_wrong_share']}) "
              f"review {r['review']:5d} ({r['review_wrong_share']}) rest {r['rest']:6d} ({r['rest_wrong_share']:.3f})")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
