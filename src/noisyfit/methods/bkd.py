"""Blind Knowledge Distillation (BKD).

Kaiser, T., Ehmann, L., Reinders, C. and Rosenhahn, B. "Blind Knowledge Distillation for Robust Image
Classification." arXiv:2211.11355, 2022 (method report for the 1st Learning and Mining with Noisy Labels
Challenge, IJCAI-ECAI 2022). Official code: TimoK93/blind_knowledge_distillation
(``blind_knowledge_dist_training.py``); the spec is ../shared/specs/methods.md section 6. [CODE] below
means read in that script at the repository's HEAD (commit 56ae05a, blob b0be5fc4, the version with
the detection task and --alpha1..4). Where it disagrees with the spec (the augmented detection pass)
the defaults follow the code and the spec's reading is an option.

Mechanism [CODE]. A teacher T learns the given labels with CE. A student S of the same architecture
sees the same augmented batch and regresses the teacher's logits on every class *except the given
label* (it is "blind" to the label), with gradients into both networks:

    L_comp = sum_i sum_{c != y_i} (z_T,ic - z_S,ic)^2 / (B*C - 1).

The per-sample score is the teacher-student agreement on the given label,
``s_i = normalise(p_T * p_S)[y_i]``, stored from the training pass every epoch. The student's mean
max-probability per epoch, ``m_e``, rises while the networks generalise; its first strict peak over
+-2 epochs is the tipping point e* (see :mod:`noisyfit.ops.tipping_point`). The scores of epoch e*
are split by BKD's modified Otsu (:mod:`noisyfit.ops.otsu`) into four groups G1 (clean) .. G4 (noisy),
and from then on the teacher learns per-sample soft targets

    t = normalise( ((1 - a) e_y + a p_S) ^ (1 + a) ),   a = alpha_g for the sample's group g,

with p_S *not* detached, plus L_comp. Prediction (test, validation, suggested labels) is the argmax of
``normalise(p_T * p_S)``. Detection: a label is flagged noisy iff its sample is in G4 of the split
of the scores of an eval-mode pass at e*; the noise-rate estimate is |G4| / N.

Hyper-parameters (``method.args.<name>``; defaults are the official code's)
-------------------------------------------------------------------------
alpha1, alpha2, alpha3, alpha4 : 0.30, 0.45, 0.55, 0.70
    Student weight (and sharpening exponent - 1) in the robust targets of G1..G4 [CODE: --alpha1..4].
window : 2
    Half-width of the strict-peak window of the tipping point [CODE].
min_epochs : 6
    Epochs recorded before any tipping decision [CODE: ``len(x) < 6``].
fallback_epoch : None
    None = no fallback, the official behaviour [CODE at HEAD]: a run whose curve has no strict peak
    never leaves phase 1 (the spec's ambiguity 4). An integer is an option of ours, not official: if
    no peak is confirmed when ``fallback_epoch + 2`` epochs are recorded, e* = fallback_epoch (checked
    before the peak search). Why it exists: short schedules (the 12-epoch CPU preset sets 6) where the
    student's confidence has no peak in time. A rule ``10 recorded epochs -> epoch 8`` of this form
    was in the official history for under two minutes (commit 1c3c351, removed by 8cec543, both
    2022-06-27) and is not at HEAD; earlier versions of this file wrongly called it official.
detect_scores : "eval"
    Scores split for the exported detection: "eval" = an eval-mode pass over the training set at every
    epoch until e* [CODE: ``calc_noise_probability`` on ``train_loader_full``]; "train" = the same
    training-pass scores that form the training groups (no extra pass). Spec ambiguity 1.
detect_augment : "weak"
    View used by that eval pass. The official full-set loader uses the *training* transform
    (flip + reflect-pad crop) with the networks in eval mode [CODE: data/datasets.py], whereas the spec
    says un-augmented; "none" gives the un-augmented pass.
otsu : "modified"
    "modified" = BKD's criterion exactly as the official code computes it; "classic" = scikit-image
    Otsu (an option of ours, not in the paper).
detach_student_target : False
    The official code does not detach p_S inside the robust target [CODE]; True stops that gradient.

Mechanism health (``health``, per epoch; from state the method keeps, no extra pass)
-----------------------------------------------------------------------------------
Nothing before the tipping decision. From the deciding epoch on: ``tipping_epoch``; ``tipping_by_peak``
(1.0 = the official peak rule set it, 0.0 = our fallback); the training split's ``otsu_theta``,
``otsu_mu_low``, ``otsu_mu_high`` and the exported split's ``detect_theta``, ``detect_mu_low``,
``detect_mu_high`` (only when the split is valid); the training groups as masks ``group1`` ..
``group4`` (the trainer logs each group's share, and the share of right labels in it as
``_precision``); ``detect_kept``, the samples the exported split does not flag (not G4), whose
precision and recall are those of the kept clean set.

Departures from the paper / official code
-----------------------------------------
* The agreement is computed as ``softmax(z_T + z_S)``, identical to ``normalise(p_T * p_S)`` in exact
  arithmetic and stable in low precision; losses run in float32 under the trainer's autocast.
* The trainer drops the last partial batch, so a few samples are not visited in an epoch (the official
  loader visits all). Such a sample keeps its training-pass score of the previous epoch; a sample never
  visited up to e* gets the score theta (no evidence either way), which puts it in G2.
* The Otsu criterion is evaluated in float64 (official: float32 torch), so exact near-ties of Q(k)
  could resolve differently; binning is ``floor(1000 s)`` like ``torch.histc``. When no split leaves
  scores on both sides the official code crashes; here nothing is flagged and all samples are G1.
* The eval pass is skipped in epochs ``< window`` (unless one is the fallback or the last epoch): they
  can never be a tipping epoch, so the result is unchanged. It covers the training split only: the
  trainer's noisy-validation split is held out, whereas the official detection file covers all 50k
  training images.
* ``fallback_epoch`` (default None = official) is ours; see the hyper-parameters above.
* No tipping point by the end of training (the official default, or runs shorter than
  ``fallback_epoch + 2`` epochs): the robust phase never runs, as in the spec's ambiguity 4; the
  exported groups split the *last* epoch's scores (same criterion and score source), and
  :meth:`flag_reason` says so. The official code has no export in that case.
* Model selection, evaluation frequency and the schedule belong to the trainer and the preset: the
  trainer checks noisy-validation accuracy every epoch (official: every 10 epochs).
* Under DDP the compensation normaliser uses the per-rank batch, ``(B/W)*C - 1``.
* The official ``learning.py`` loads the *teacher's* weights into the student before its final test
  (so its test accuracy is effectively argmax p_T); we evaluate the agreement, as its training
  script's ``evaluate`` and the spec do.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch
import torch.nn.functional as F

from noisyfit.methods.base import Method, register_method
from noisyfit.ops.losses import soft_cross_entropy
from noisyfit.ops.otsu import OtsuSplit, four_groups, otsu_split
from noisyfit.ops.tipping_point import detect_tipping_epoch, lookback_needed


# ---------------------------------------------------------------------------------------------- pieces
def blind_compensation_loss(z_teacher: torch.Tensor, z_student: torch.Tensor,
                            labels: torch.Tensor) -> torch.Tensor:
    """BKD's blind compensation loss: squared logit differences on every class but the label's.

    ``sum_{i, c != y_i} (z_T,ic - z_S,ic)^2 / (B*C - 1)`` (the official normaliser), in float32;
    gradients reach both networks.

    Parameters
    ----------
    z_teacher, z_student : Tensor, shape (B, C)
        Logits of the teacher and the student for the same inputs.
    labels : Tensor, shape (B,)
        Given labels; their column is masked out.
    """
    b, c = z_teacher.shape
    keep = 1.0 - F.one_hot(labels, c).float()
    diff = (z_teacher.float() - z_student.float()) * keep
    return diff.pow(2).sum() / (b * c - 1)


def agreement_log_probs(z_teacher: torch.Tensor, z_student: torch.Tensor) -> torch.Tensor:
    """``log normalise(p_T * p_S)``; since ``p_T * p_S`` is proportional to ``exp(z_T + z_S)`` this is
    ``log_softmax(z_T + z_S)``."""
    return F.log_softmax(z_teacher.float() + z_student.float(), dim=1)


def robust_targets(labels: torch.Tensor, p_student: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """BKD's robust-phase targets ``normalise(((1 - a) e_y + a p_S) ** (1 + a))``, row by row.

    Parameters
    ----------
    labels : Tensor, shape (B,)
    p_student : Tensor, shape (B, C)
        Student probabilities; gradients flow through them unless the caller detaches them.
    alpha : Tensor, shape (B,)
        Per-sample weight of the student (its group's alpha); also sets the sharpening exponent 1 + a.
    """
    a = alpha.float()[:, None]
    mix = (1.0 - a) * F.one_hot(labels, p_student.shape[1]).float() + a * p_student.float()
    sharp = mix.pow(1.0 + a)
    return sharp / sharp.sum(dim=1, keepdim=True)


# ---------------------------------------------------------------------------------------------- method
@register_method("bkd")
class BlindKnowledgeDistillation(Method):
    """Teacher + blind student, tipping point, four Otsu groups, group-weighted sharpened targets."""

    summary = 'Blind Knowledge Distillation (Kaiser et al. 2022): a teacher and a student blind to the given label; Otsu splits at the tipping point. 2 networks'

    @dataclasses.dataclass
    class Hyper:
        alpha1: float = 0.30
        alpha2: float = 0.45
        alpha3: float = 0.55
        alpha4: float = 0.70
        window: int = 2
        min_epochs: int = 6
        fallback_epoch: int | None = None  # ours; None = official
        detect_scores: str = "eval"
        detect_augment: str = "weak"
        otsu: str = "modified"
        detach_student_target: bool = False

        def __post_init__(self):
            for i, a in enumerate(self.alphas(), 1):
                if not 0.0 <= a <= 1.0:
                    raise ValueError(f"method 'bkd': alpha{i}={a} must lie in [0, 1]")
            if self.window < 1 or self.min_epochs < 1:
                raise ValueError(f"method 'bkd': window ({self.window}) and min_epochs ({self.min_epochs}) "
                                 "must be >= 1")
            if self.fallback_epoch is not None and self.fallback_epoch + 2 < self.min_epochs:
                raise ValueError(f"method 'bkd': fallback_epoch={self.fallback_epoch} is decided when "
                                 "fallback_epoch + 2 epochs are recorded, before "
                                 f"min_epochs={self.min_epochs}, so it could never fire; raise it or set "
                                 "method.args.fallback_epoch=null")
            choices = {"detect_scores": ("eval", "train"), "detect_augment": ("none", "weak", "strong"),
                       "otsu": ("modified", "classic")}
            for key, ok in choices.items():
                if getattr(self, key) not in ok:
                    raise ValueError(f"method 'bkd': {key}={getattr(self, key)!r}; use one of {ok}")

        def alphas(self) -> tuple[float, float, float, float]:
            return (self.alpha1, self.alpha2, self.alpha3, self.alpha4)

    per_sample_state = ("train_scores", "eval_scores", "groups", "detect_groups", "detect_score")

    def __init__(self, hyper, num_classes, num_samples, make_backbone):
        super().__init__(hyper, num_classes, num_samples, make_backbone)
        self.teacher = make_backbone()
        self.student = make_backbone()
        # Ring of the last `slots` epochs' scores (column = epoch % slots): all a tipping decision can
        # ask for, so memory stays N x slots whatever the schedule.
        self.slots = lookback_needed(self.hp.window, self.hp.min_epochs)
        nan = float("nan")
        self.register_buffer("train_scores", torch.full((num_samples, self.slots), nan))
        self.register_buffer("eval_scores", torch.full((num_samples, self.slots), nan))
        # training groups (from training-pass scores) and exported groups; 0 = no group yet
        self.register_buffer("groups", torch.zeros(num_samples, dtype=torch.int8))
        self.register_buffer("detect_groups", torch.zeros(num_samples, dtype=torch.int8))
        self.register_buffer("detect_score", torch.full((num_samples,), nan))
        self.conf_history: list[float] = []  # m_e, student mean max-probability per epoch
        self.tipping_epoch: int | None = None
        self.tipping_rule: str | None = None  # "peak" | "fallback"
        self.decided_after_epoch: int | None = None
        self.train_split: OtsuSplit | None = None
        self.detect_split: OtsuSplit | None = None
        self.detect_epoch: int | None = None  # epoch whose scores the exported groups split
        self._conf_sum = torch.zeros((), dtype=torch.float64)
        self._conf_n = 0

    # ------------------------------------------------------------------ training
    @property
    def robust(self) -> bool:
        """True once the tipping point is found (the group-weighted targets are in use)."""
        return self.tipping_epoch is not None

    def on_epoch_start(self, epoch, ctx):
        self._conf_sum = torch.zeros((), dtype=torch.float64, device=self.train_scores.device)
        self._conf_n = 0
        if not self.robust:
            col, prev = epoch % self.slots, (epoch - 1) % self.slots
            # Carry the previous score forward for samples this epoch will not visit (dropped last batch).
            self.train_scores[:, col] = self.train_scores[:, prev] if epoch > 0 else float("nan")

    def training_step(self, batch, epoch):
        x, y = batch.x, batch.y
        z_t = self.teacher(x).float()
        z_s = self.student(x).float()
        comp = blind_compensation_loss(z_t, z_s, y)
        p_s = F.softmax(z_s, dim=1)
        with torch.no_grad():
            conf = p_s.max(dim=1).values
            self._conf_sum += conf.sum().double()
            self._conf_n += len(y)
            if not self.robust:
                score = agreement_log_probs(z_t, z_s).gather(1, y[:, None]).squeeze(1).exp()
                self.train_scores[batch.index, epoch % self.slots] = score
        if self.robust:
            table = torch.tensor((1.0, *self.hp.alphas()), device=z_t.device)  # index 0 never occurs
            alpha = table[self.groups[batch.index].long()]
            t = robust_targets(y, p_s.detach() if self.hp.detach_student_target else p_s, alpha)
            ce = soft_cross_entropy(z_t, t).mean()
        else:
            ce = F.cross_entropy(z_t, y)
        return {"loss": ce + comp, "ce": ce.detach(), "comp": comp.detach(), "student_conf": conf.mean(),
                "robust": float(self.robust)}

    def transient_state(self) -> dict:
        return {"conf_sum": self._conf_sum, "conf_n": self._conf_n}

    def load_transient_state(self, state: dict) -> None:
        self._conf_sum = state["conf_sum"].to(self.train_scores.device)
        self._conf_n = int(state["conf_n"])

    def on_epoch_end(self, epoch, ctx):
        tot = ctx.all_gather_cat(torch.stack([self._conf_sum, self._conf_sum.new_tensor(self._conf_n)])[None])
        tot = tot.sum(dim=0)
        self.conf_history.append(float(tot[0] / tot[1]) if tot[1] > 0 else math.nan)
        if self.robust:
            return
        found = detect_tipping_epoch(self.conf_history, window=self.hp.window, min_epochs=self.hp.min_epochs,
                                     fallback_epoch=self.hp.fallback_epoch)
        if found is not None:
            self._enter_robust_phase(found[0], found[1], epoch)
        elif self.hp.detect_scores == "eval" and self._scores_may_be_needed(epoch, ctx.num_epochs):
            # As in the official code, no pass in the epoch that decides (e* is always an earlier epoch).
            self.eval_scores[:, epoch % self.slots] = self.eval_pass_scores(ctx)

    def _scores_may_be_needed(self, epoch: int, num_epochs: int) -> bool:
        # Epochs before `window` cannot be peaks; they matter only as the fallback or the last epoch.
        return epoch >= self.hp.window or epoch == self.hp.fallback_epoch or epoch == num_epochs - 1

    def eval_pass_scores(self, ctx) -> torch.Tensor:
        """Agreement probability of the given label over the training set, networks in eval mode."""
        logp = ctx.predict_train(self.predict_logits, augment=self.hp.detect_augment)
        return logp.gather(1, ctx.labels[:, None]).squeeze(1).exp().to(self.eval_scores.device)

    def _split(self, scores: torch.Tensor) -> tuple[OtsuSplit, np.ndarray, np.ndarray]:
        s = scores.detach().cpu().double().numpy()
        split = otsu_split(s, self.hp.otsu)
        s = np.where(np.isnan(s), split.threshold, s)  # never-visited samples: no evidence either way
        return split, four_groups(s, split), s

    def _export(self, scores: torch.Tensor, epoch: int) -> None:
        split, groups, filled = self._split(scores)
        self.detect_split, self.detect_epoch = split, epoch
        self.detect_groups.copy_(torch.from_numpy(groups))
        self.detect_score.copy_(torch.from_numpy(filled).float())

    def _enter_robust_phase(self, e_star: int, rule: str, epoch: int) -> None:
        if epoch - e_star >= self.slots:  # lookback_needed() guarantees this cannot happen
            raise RuntimeError(f"BKD: tipping epoch {e_star} is older than the {self.slots} kept epochs")
        col = e_star % self.slots
        split, groups, _ = self._split(self.train_scores[:, col])
        self.train_split = split
        self.groups.copy_(torch.from_numpy(groups))
        detect = self.eval_scores if self.hp.detect_scores == "eval" else self.train_scores
        self._export(detect[:, col], e_star)
        self.tipping_epoch, self.tipping_rule, self.decided_after_epoch = e_star, rule, epoch

    def on_fit_end(self, ctx):
        if not self.robust and self.conf_history:
            last = len(self.conf_history) - 1
            scores = self.eval_scores if self.hp.detect_scores == "eval" else self.train_scores
            self._export(scores[:, last % self.slots], last)
        super().on_fit_end(ctx)

    def predict_logits(self, x):
        """``log normalise(p_T * p_S)``: its argmax is BKD's prediction."""
        return agreement_log_probs(self.teacher(x), self.student(x))

    # ------------------------------------------------------------------ outputs
    def group_of_samples(self) -> np.ndarray | None:
        """Exported groups 1..4 per training sample (G1 most likely clean, G4 flagged noisy), or None."""
        return None if self.detect_epoch is None else self.detect_groups.cpu().numpy().copy()

    def training_groups(self) -> np.ndarray | None:
        """Groups that weight the robust-phase targets (from training-pass scores), or None before e*."""
        return self.groups.cpu().numpy().copy() if self.robust else None

    def clean_scores(self, labels):
        """The agreement score that was split for the exported groups (higher = cleaner)."""
        return None if self.detect_epoch is None else self.detect_score.cpu().numpy().astype(np.float64)

    def noisy_flags(self, labels):
        g = self.group_of_samples()
        return None if g is None else g == 4

    def flag_reason(self) -> str:
        if self.detect_epoch is None:
            return "BKD: no groups yet (training has not reached the tipping point or its end)"
        sp = self.detect_split
        source = (f"an eval-mode pass ({self.hp.detect_augment} view)" if self.hp.detect_scores == "eval"
                  else "the training pass")
        peak = f"strict +-{self.hp.window}-epoch peak of the student's mean max-probability"
        if self.robust:
            if self.tipping_rule == "peak":
                when = f"the tipping epoch {self.tipping_epoch} (first {peak})"
            else:
                when = (f"epoch {self.tipping_epoch}, forced because no {peak} was found by epoch "
                        f"{self.tipping_epoch + 1} (fallback_epoch, an option of ours; the official code "
                        "has no fallback)")
        else:
            when = (f"the last epoch {self.detect_epoch}: NO tipping point was found in "
                    f"{len(self.conf_history)} epochs, so the robust phase never ran")
        if not sp.valid:
            return f"BKD: scores at {when} could not be split by {sp.criterion} Otsu; nothing flagged"
        return (f"BKD group G4: teacher-student agreement p(given label) < mu_low = {sp.mu_low:.4f} "
                f"({sp.criterion} Otsu, theta = {sp.threshold:.3f}, mu_high = {sp.mu_high:.4f}) on scores "
                f"from {source} at {when}")

    def health(self, epoch):
        """Tipping point, Otsu thresholds and groups once decided (see "Mechanism health" above)."""
        if not self.robust:
            return {}
        out: dict = {"tipping_epoch": self.tipping_epoch,
                     "tipping_by_peak": 1.0 if self.tipping_rule == "peak" else 0.0}
        for prefix, sp in (("otsu", self.train_split), ("detect", self.detect_split)):
            if sp is not None and sp.valid:
                out.update({f"{prefix}_theta": sp.threshold, f"{prefix}_mu_low": sp.mu_low,
                            f"{prefix}_mu_high": sp.mu_high})
        groups = self.groups.cpu().numpy()
        for g in range(1, 5):
            out[f"group{g}"] = groups == g
        out["detect_kept"] = self.detect_groups.cpu().numpy() != 4
        return out

    def per_sample_extras(self):
        """``bkd_group`` (exported G1..G4) and ``bkd_training_group`` for per_sample.npz."""
        return {"bkd_group": self.group_of_samples(), "bkd_training_group": self.training_groups()}

    def describe(self) -> dict:
        """Tipping point, splits and group sizes, for reports."""
        g = self.group_of_samples()
        return {"tipping_epoch": self.tipping_epoch, "tipping_rule": self.tipping_rule,
                "decided_after_epoch": self.decided_after_epoch, "detect_epoch": self.detect_epoch,
                "student_conf_history": list(self.conf_history),
                "train_split": None if self.train_split is None else self.train_split.as_dict(),
                "detect_split": None if self.detect_split is None else self.detect_split.as_dict(),
                "group_sizes": None if g is None else {f"G{k}": int((g == k).sum()) for k in range(1, 5)}}

    # ------------------------------------------------------------------ checkpoints
    def get_extra_state(self):
        return {"conf_history": list(self.conf_history), "tipping_epoch": self.tipping_epoch,
                "tipping_rule": self.tipping_rule, "decided_after_epoch": self.decided_after_epoch,
                "detect_epoch": self.detect_epoch,
                "train_split": None if self.train_split is None else self.train_split.as_dict(),
                "detect_split": None if self.detect_split is None else self.detect_split.as_dict()}

    def set_extra_state(self, state):
        self.conf_history = list(state["conf_history"])
        self.tipping_epoch = state["tipping_epoch"]
        self.tipping_rule = state["tipping_rule"]
        self.decided_after_epoch = state["decided_after_epoch"]
        self.detect_epoch = state["detect_epoch"]
        self.train_split = None if state["train_split"] is None else OtsuSplit(**state["train_split"])
        self.detect_split = None if state["detect_split"] is None else OtsuSplit(**state["detect_split"])
