"""What a finished run writes: results.json (one schema for every run), per_sample.npz and model.pt.

``results.json`` is the record the bench, the audit and reports read: the command, commit, machine and
config; per-epoch history; the selected and final accuracies; detection quality against the truth when it is
known; compute. :func:`results_envelope` is its header, shared with the bench's cleanlab rows so the two
never drift apart.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import torch

from noisyfit import __version__
from noisyfit.engine.checkpoint import atomic_write_bytes, atomic_write_json
from noisyfit.engine.machine import git_commit, machine_info, peak_memory_mb
from noisyfit.metrics import detection_metrics

RESULTS_SCHEMA = "noisyfit.results/1"


def results_envelope(*, schema: str, command, device: torch.device, seed: int, config: dict,
                     commit: str | None = None) -> dict:
    """The header of every result file: what ran, where, from which code, when, with which settings.
    ``commit``: the code's commit when the run started (default: now)."""
    return {"schema": schema, "noisyfit_version": __version__, "command": list(command or sys.argv),
            "commit": commit or git_commit(), "machine": machine_info(device), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "seed": seed, "config": config}


def per_sample_outputs(method, data) -> dict:
    """Per training sample: positions, labels, the method's clean score, flag, suggestion, probabilities and
    its extra columns (e.g. BKD's groups)."""
    tr = data.train
    labels = tr.labels
    out = {"train_index": data.train_index, "val_index": data.val_index, "given": labels}
    if tr.true_labels is not None:
        out["true"] = tr.true_labels
    for key, fn in (("clean_score", lambda: method.clean_scores(labels)),
                    ("flag", lambda: method.noisy_flags(labels)),
                    ("suggested", method.suggested_labels)):
        v = fn()
        if v is not None:
            out[key] = np.asarray(v)
    if method.final_probs.numel():
        out["probs"] = method.final_probs.cpu().numpy().astype(np.float32)
    for key, v in method.per_sample_extras().items():
        if v is not None and key not in out:
            out[key] = np.asarray(v)
    return out


def _maybe_float(v) -> float | None:
    return None if v is None else float(v)


def run_results(t, wall_seconds: float) -> dict:
    """results.json of a finished Trainer ``t``."""
    cfg, tr = t.cfg, t.data.train
    ps = per_sample_outputs(t.method, t.data)
    last = t.history[-1] if t.history else {}
    detection = None
    if tr.true_labels is not None:
        detection = detection_metrics(tr.labels != tr.true_labels, flags=ps.get("flag"),
                                      clean_scores=ps.get("clean_score"),
                                      estimated_noise_rate=t.method.estimated_noise_rate(tr.labels))
    train_secs = [h["train_seconds"] for h in t.history]
    compute = {"device": str(t.device), "precision": t.precision, "world_size": t.world_size,
               "seconds_per_epoch": float(np.mean(train_secs)) if train_secs else None,
               "seconds_per_epoch_median": float(np.median(train_secs)) if train_secs else None,
               "train_seconds_total": t.train_seconds_total,
               "wall_seconds_this_session": wall_seconds,
               "images_per_second": float(np.median([h["images_per_second"] for h in t.history]))
               if t.history else None}
    shares = [h["others_cpu_share"] for h in t.history if h.get("others_cpu_share") is not None]
    if shares:  # how much of the machine other processes took while this run was timed
        compute["others_cpu_share_median"] = float(np.median(shares))
        compute["others_cpu_share_max"] = float(np.max(shares))
    compute.update(peak_memory_mb(t.device))
    compute["wall_seconds_total"] = t.wall_seconds_total
    if t.sessions:  # a resumed run: the peak over all its sessions
        for key in ("peak_rss_mb", "cuda_max_allocated_mb"):
            if key in compute:
                compute[key] = max([compute[key], *(s.get(key, 0.0) for s in t.sessions)])
        compute["sessions"] = t.sessions + [t._this_session()]
    # the code that ran: the commit when the run started (its first session), not the one checked out when it
    # ended (a 2-hour run had recorded a commit made while it trained); the end's too when they differ
    started = (t.sessions[0].get("commit") if t.sessions else None) or t.session_commit
    ended = git_commit()
    return {
        **results_envelope(schema=RESULTS_SCHEMA, command=t.command, device=t.device, seed=cfg.train.seed,
                           config=cfg.to_dict(), commit=started),
        **({"commit_at_end": ended} if ended != started else {}),
        "method": {"name": cfg.method.name, "hyper": t.method.hyper_dict(),
                   "flag_rule": t.method.flag_reason(),
                   # the method's own estimate, also when no true labels exist (read by audits)
                   "estimated_noise_rate": _maybe_float(t.method.estimated_noise_rate(tr.labels))},
        "data": {"source": t.data.source_name, "num_classes": tr.num_classes,
                 "class_names": list(tr.class_names), "num_train": len(tr),
                 "num_val": 0 if t.data.val is None else len(t.data.val),
                 "num_test": 0 if t.data.test is None else len(t.data.test),
                 "train_noise_rate": tr.noise_rate, "noise": t.data.noise_info},
        "epochs": t.history,
        "final": {"epoch": last.get("epoch"), "test_acc": last.get("test_acc"), "val_acc": last.get("val_acc")},
        "selected": dict(t.best, rule="max noisy-validation accuracy"),
        "detection": detection,
        "compute": compute,
        "files": {"per_sample": "per_sample.npz", "metrics": "metrics.jsonl", "config": "config.yaml",
                  "best_model": "best_model.pt", "checkpoint": "checkpoint.pt", "model": "model.pt"},
    }


def write_run_outputs(t, results: dict) -> None:
    """per_sample.npz, model.pt and results.json of a finished Trainer ``t`` (results.json last: its presence
    marks a finished run)."""
    from noisyfit.predictor import write_predictor

    ps = per_sample_outputs(t.method, t.data)
    ps["class_names"] = np.array(t.data.train.class_names, dtype=str)  # label i is class_names[i]
    atomic_write_bytes(t.out_dir / "per_sample.npz", lambda f: np.savez_compressed(f, **ps))
    write_predictor(t, results)  # model.pt: predicts on raw inputs (noisyfit.predictor)
    atomic_write_json(t.out_dir / "results.json", results)
