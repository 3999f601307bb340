"""Label audit: which labels are wrong, what they should be, why, and how much noise there is.

Functions over ``(labels, pred_probs)`` in cleanlab's style (and with its argument names), plus the same
questions answered from a finished noisyfit run or from several annotators::

    from noisyfit.detect import find_label_issues, label_quality_scores, estimate_noise
    mask = find_label_issues(labels, pred_probs)                   # bool mask, like cleanlab
    issues = audit_label_issues(labels, pred_probs)                # + suggested label, score, reason
    issues = issues_from_run("runs/ce")                            # a method's own per-sample signal
    pred_probs = out_of_fold_pred_probs(cfg, folds=5, epochs=10)   # when you bring no predictions
    ml = audit_multilabel_features(features, label_sets)           # several classes per example
"""

from noisyfit.detect.count import (NoiseEstimate, calibrate_confident_joint, compute_confident_joint,
                                   confident_thresholds, estimate_joint, estimate_noise, num_label_issues)
from noisyfit.detect.filter import FILTERS, audit_label_issues, find_label_issues, prune_counts
from noisyfit.detect.from_run import issues_from_run
from noisyfit.detect.issues import LabelIssues
from noisyfit.detect.multiannotator import (DawidSkeneResult, annotator_quality, consensus_issues, dawid_skene,
                                            majority_vote)
from noisyfit.detect.multilabel import MultiLabelIssues, multilabel_issues
from noisyfit.detect.multilabel_crossfit import audit_multilabel_features, cross_fit_multilabel, multilabel_folds
from noisyfit.detect.neighbors import KnnGraph, knn_graph, neighbor_class_shares, neighbor_votes
from noisyfit.detect.oof import OutOfFold, out_of_fold, out_of_fold_pred_probs
from noisyfit.detect.rank import find_top_issues, label_quality_scores, order_label_issues
from noisyfit.detect.validation import DetectInputError, load_pred_probs
from noisyfit.detect.clean import Cleaning, clean_labels

__all__ = [
    "FILTERS", "Cleaning", "DawidSkeneResult", "DetectInputError", "KnnGraph", "LabelIssues", "MultiLabelIssues",
    "NoiseEstimate",
    "OutOfFold",
    "annotator_quality", "audit_label_issues", "audit_multilabel_features", "calibrate_confident_joint", "clean_labels", "compute_confident_joint",
    "confident_thresholds", "consensus_issues", "cross_fit_multilabel", "dawid_skene", "estimate_joint", "estimate_noise",
    "find_label_issues", "find_top_issues", "issues_from_run", "knn_graph", "label_quality_scores", "load_pred_probs",
    "majority_vote", "multilabel_folds", "multilabel_issues", "neighbor_class_shares", "neighbor_votes", "num_label_issues", "order_label_issues", "out_of_fold", "out_of_fold_pred_probs",
    "prune_counts",
]
