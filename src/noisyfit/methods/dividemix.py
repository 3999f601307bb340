"""DivideMix: two networks, per-epoch GMM co-divide, and a modified MixMatch on the split.

Li, J., Socher, R. and Hoi, S. C. H. "DivideMix: Learning with Noisy Labels as Semi-supervised
Learning." ICLR 2020. Official code: LiJunnan1992/DivideMix (Train_cifar.py). Spec: methods.md §8.2.

Per epoch after warm-up, each network's per-sample CE (eval mode, no augmentation) is min-max normalised
and a 2-component 1-D GMM gives each sample's clean posterior w (lower-mean component). Each network then
trains on the split of the *other* network (co-divide): X = {w > p_threshold} with its w, U = the rest.
Targets: co-refinement for X (w * onehot + (1 - w) * mean of two weak views, sharpened), co-guessing for U
(mean over two weak views x both networks, sharpened). MixUp over [x1, x2, u1, u2] with
lam = max(lam, 1 - lam); loss L_x (soft CE) + lambda_u * ramp * L_u (MSE) + KL(uniform || mean p).
Warm-up: CE on all data (plus the negative-entropy penalty for asymmetric noise). Test: summed logits.

Hyper-parameters (defaults = official CIFAR code)
-------------------------------------------------
warmup_epochs   10 (CIFAR-10; 30 for CIFAR-100)
p_threshold     0.5 (clean if posterior > p_threshold)
lambda_u        25 (official CLI default; the README uses 0/25/25/50 for sym 20/50/80/90 %, 0 for asym 40 %)
rampup_epochs   16 (lambda_u ramps linearly over 16 epochs after warm-up, per iteration)
alpha           4 (Beta(alpha, alpha) of MixUp)
temperature     0.5 (sharpening T)
conf_penalty    False (True = negative-entropy penalty in warm-up, the official choice for asym noise)
loss_window     1 (the official code averages the normalised loss over the last 5 epochs at 90 % noise)
mix_views       "weak" (the inputs that are mixed; PLReMix mixes strong views, AugDesc-WS style)

Presets: ``dividemix/cpu-cifar10n`` (shared CPU protocol, scaled warm-up and ramp), ``dividemix/paper-cifar10n``
and the README's per-noise CIFAR-10 settings ``dividemix/paper-cifar10-{sym20,sym50,sym80,sym90,asym40}``
(lambda_u 0/25/25/50/0; 90 %: 5-epoch loss averaging and p_threshold 0.6; asym: confidence penalty).

Clean score: the GMM clean posterior averaged over the two networks, refitted on the final networks
after the last epoch; flags: posterior <= p_threshold (the complement of the official clean set).

Mechanism health (``health``, per epoch after warm-up; the split the epoch trained on, no extra pass)
-------------------------------------------------------------------------------------------------
``clean_split_net1`` / ``clean_split_net2``: masks of the labelled (clean) set that network 1's / 2's
GMM selected at the start of the epoch (the *partner* trains on it); the trainer logs its share,
``_precision`` and ``_recall`` (split precision and recall). ``clean_prob_net1`` / ``clean_prob_net2``:
the GMM clean posteriors as scores (``_auroc``). Nothing during warm-up (no split yet). PLReMix and
DivideMix + PLR inherit this.

Departures from the official code
---------------------------------
* Both networks train in every step on the same trainer batch (one optimiser over both), instead of net1
  for a whole epoch and then net2. Consequently the partner used for co-guessing is the current one, not
  the partner frozen at the start of the epoch. [design: one trainer loop]
* An epoch is one pass over all training indices in trainer batches: a step trains network k on the
  batch's members in k's labelled set (from the partner's split) and on an equal number of unlabelled
  samples drawn from a shuffled, cycled copy of the partner's noisy set. The labelled batch size varies
  around batch_size * clean fraction instead of being fixed at 64, so at high noise an epoch has more,
  smaller labelled batches than the official one (e.g. sym-80: ~371 steps of ~36+36 vs ~208 of 64+64).
  The trainer drops the last N mod batch_size samples of each epoch's shuffle (a different subset each
  epoch; 396 samples on the CPU protocol), where the official labelled loader keeps them.
* Training steps and the per-epoch selection passes run under the trainer's precision (bf16 autocast
  on the CPU protocol; the official code is fp32): the per-sample losses fed to the GMM come from bf16
  logits.
* The ramp's progress is epoch + (samples seen this epoch) / (training-set size), not batch_idx / num_iter
  with num_iter from |X|.
* GMM k-means initialisation is seeded (train seed, epoch, network) and fitted on rank 0's copy (broadcast),
  so resume and DDP are exact; the official code leaves it unseeded.
* MixUp's lambda is drawn from torch's generator, not numpy's.
* Each network's warm-up step sees its own weak view of the trainer batch (official: its own loader pass).
* Both networks' graphs are alive until the trainer's single backward, so a step holds about twice the
  activations of one official step per network (4 x labelled count images per network; more with PLR).
* Edge cases the official loop cannot meet: a batch with no labelled member skips that network's MixMatch
  term; an empty unlabelled set leaves L_x and the prior penalty only.
"""

from __future__ import annotations

import dataclasses
import math
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from noisyfit.methods.base import Method, register_method
from noisyfit.ops.gmm import gmm_split_1d, minmax_normalise
from noisyfit.ops.mixmatch import (
    co_guess,
    co_refine,
    linear_rampup,
    mixup,
    negative_entropy,
    sample_mix_lambda,
    semi_losses,
    uniform_prior_penalty,
)

MIX_VIEWS = ("weak", "strong")


@contextmanager
def eval_mode(module: nn.Module):
    """Temporarily put ``module`` in eval mode (the partner network when guessing labels)."""
    was = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was)


class SplitViews:
    """Augmented views of a labelled (X) and an unlabelled (U) sub-batch, strong views drawn lazily."""

    def __init__(self, xb, ub):
        self.xb, self.ub = xb, ub
        self.x_weak = (xb.weak(), xb.weak())
        self.u_weak = (ub.weak(), ub.weak()) if len(ub) else ()
        self._strong = None

    def strong(self) -> tuple[tuple, tuple]:
        """Two strong views of X and of U (the same tensors for every caller of this step)."""
        if self._strong is None:
            sx = (self.xb.strong(), self.xb.strong())
            su = (self.ub.strong(), self.ub.strong()) if len(self.ub) else ()
            self._strong = (sx, su)
        return self._strong

    def mix_inputs(self, kind: str) -> list[torch.Tensor]:
        if kind == "weak":
            return [*self.x_weak, *self.u_weak]
        sx, su = self.strong()
        return [*sx, *su]


def seed_for(ctx, epoch: int, net: int) -> int:
    """Seed of a GMM fit: a function of (train seed, epoch, network) only."""
    return (int(ctx.seed) * 1_000_003 + epoch * 7 + net) % (2 ** 32)


def from_rank0(ctx, t: torch.Tensor) -> torch.Tensor:
    """Rank 0's copy of ``t`` on every rank (sklearn fits are replicated; this makes them identical)."""
    if ctx.world_size <= 1:
        return t
    return ctx.all_gather_cat(t.unsqueeze(0).contiguous())[0]


@register_method("dividemix")
class DivideMix(Method):
    """DivideMix (two networks, 1-D GMM co-divide, MixMatch). See the module docstring."""

    summary = 'DivideMix (Li et al., ICLR 2020): GMM co-divide into clean/noisy, then MixMatch semi-supervised training. 2 networks, strong cost'

    #: allowed intervals of the numeric hyper-parameters (checked before any data is loaded)
    hyper_ranges = {"warmup_epochs": "[0, inf)", "p_threshold": "[0, 1]", "lambda_u": "[0, inf)",
                    "rampup_epochs": "[0, inf)", "alpha": "[0, inf)", "temperature": "(0, inf)",
                    "loss_window": "[1, inf)"}

    @dataclasses.dataclass
    class Hyper:
        warmup_epochs: int = 10
        p_threshold: float = 0.5
        lambda_u: float = 25.0
        rampup_epochs: float = 16.0
        alpha: float = 4.0
        temperature: float = 0.5
        conf_penalty: bool = False
        loss_window: int = 1
        mix_views: str = "weak"

    per_sample_state = ("clean_prob", "loss_hist")
    num_nets = 2

    def __init__(self, hyper, num_classes, num_samples, make_backbone):
        super().__init__(hyper, num_classes, num_samples, make_backbone)
        if self.hp.mix_views not in MIX_VIEWS:
            raise ValueError(f"method.args.mix_views must be one of {MIX_VIEWS}, got {self.hp.mix_views!r}")
        if self.hp.loss_window < 1:
            raise ValueError(f"method.args.loss_window must be >= 1, got {self.hp.loss_window}")
        self.nets = nn.ModuleList([make_backbone() for _ in range(self.num_nets)])
        # clean_prob[:, k] = posterior of network k's GMM; network 1-k trains on it (co-divide)
        self.register_buffer("clean_prob", torch.ones(num_samples, self.num_nets))
        self.register_buffer("loss_hist", torch.zeros(num_samples, self.num_nets, self.hp.loss_window))
        self.register_buffer("num_fits", torch.zeros((), dtype=torch.long))
        self._pools: list[torch.Tensor] = []
        self._queues: list[torch.Tensor] = []
        self._cursor: list[int] = []
        self._seen = 0

    # ------------------------------------------------------------------ selection
    def selection_outputs(self, x: torch.Tensor) -> torch.Tensor:
        """What the per-epoch eval pass computes: the logits of both networks side by side."""
        return torch.cat([net(x) for net in self.nets], dim=1)

    def logits_from_outputs(self, outs: torch.Tensor) -> list[torch.Tensor]:
        c = self.num_classes
        return [outs[:, k * c:(k + 1) * c] for k in range(self.num_nets)]

    def fit_selection(self, outs: torch.Tensor, ctx, epoch: int) -> None:
        """1-D GMM on each network's normalised CE (averaged over ``loss_window`` epochs)."""
        labels = ctx.labels
        w = self.hp.loss_window
        probs = []
        for k, logits in enumerate(self.logits_from_outputs(outs)):
            loss = F.cross_entropy(logits.float(), labels, reduction="none").cpu().numpy()
            norm = torch.from_numpy(minmax_normalise(loss)).float().to(self.loss_hist.device)
            self.loss_hist[:, k] = torch.roll(self.loss_hist[:, k], shifts=1, dims=1)
            self.loss_hist[:, k, 0] = norm
            filled = min(int(self.num_fits) + 1, w)
            avg = self.loss_hist[:, k, :filled].mean(dim=1).cpu().numpy()
            split = gmm_split_1d(avg, normalise=False, random_state=seed_for(ctx, epoch, k))
            probs.append(torch.from_numpy(split.clean_prob).float())
        prob = torch.stack(probs, dim=1).to(self.clean_prob.device)
        self.clean_prob.copy_(from_rank0(ctx, prob))
        self.num_fits += 1

    def run_selection(self, ctx, epoch: int) -> torch.Tensor:
        outs = ctx.predict_train(self.selection_outputs)
        self.fit_selection(outs, ctx, epoch)
        return outs

    def labelled_mask(self, index: torch.Tensor, net: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Network ``net`` trains on its partner's split: (is labelled, clean posterior) for ``index``."""
        w = self.clean_prob[index, 1 - net]
        return w > self.hp.p_threshold, w

    # ------------------------------------------------------------------ hooks
    def on_epoch_start(self, epoch, ctx):
        self._seen = 0
        if epoch < self.hp.warmup_epochs:
            return
        self.run_selection(ctx, epoch)
        self.prepare_unlabelled()

    def prepare_unlabelled(self) -> None:
        """Each network's unlabelled pool (the partner's noisy set) and a fresh shuffle of it."""
        self._pools, self._queues, self._cursor = [], [], []
        for k in range(self.num_nets):
            pool = torch.nonzero(self.clean_prob[:, 1 - k] <= self.hp.p_threshold).flatten()
            self._pools.append(pool)
            self._queues.append(pool[torch.randperm(len(pool)).to(pool.device)])
            self._cursor.append(0)

    def draw_unlabelled(self, net: int, count: int) -> torch.Tensor:
        """The next ``count`` indices of the partner's noisy set, reshuffled when used up."""
        pool = self._pools[net]
        if count == 0 or len(pool) == 0:
            return pool[:0]
        if self._cursor[net] + count > len(self._queues[net]):
            reps = math.ceil(count / len(pool))
            self._queues[net] = torch.cat([pool[torch.randperm(len(pool)).to(pool.device)] for _ in range(reps)])
            self._cursor[net] = 0
        out = self._queues[net][self._cursor[net]:self._cursor[net] + count]
        self._cursor[net] += count
        return out

    def transient_state(self) -> dict:
        return {"seen": self._seen, "pools": list(self._pools), "queues": list(self._queues),
                "cursor": list(self._cursor)}

    def load_transient_state(self, state: dict) -> None:
        dev = self.clean_prob.device
        self._seen = int(state["seen"])
        self._pools = [p.to(dev) for p in state["pools"]]
        self._queues = [q.to(dev) for q in state["queues"]]
        self._cursor = [int(c) for c in state["cursor"]]

    def training_step(self, batch, epoch):
        progress = epoch + self._seen * self.ctx.world_size / self.num_samples
        self._seen += len(batch)
        warm = epoch < self.hp.warmup_epochs
        # where the loop offers it, each network's loss is back-propagated as soon as it is computed: the
        # networks share no parameters, so the gradients are those of the sum, and only one network's graph
        # (4 mixed views plus PLReMix's 2 strong ones) is held at a time instead of both
        backward = getattr(getattr(self, "ctx", None), "backward", None)
        total, sums, counts = 0.0, {}, {}
        for k in range(self.num_nets):
            loss, net_logs = self.warmup_loss(k, batch) if warm else self.semi_loss(k, batch, epoch, progress)
            if backward is not None:
                backward(loss)
                loss = loss.detach()
            total = total + loss
            for key, v in net_logs.items():
                # tensors stay on the device (the trainer sums them without a host read each step)
                sums[key] = sums.get(key, 0.0) + (v.detach().double() if torch.is_tensor(v) else float(v))
                counts[key] = counts.get(key, 0) + 1
        # each key is averaged over the networks that logged it: a network with nothing labelled in the
        # batch logs only "labelled" (0.0), and must not halve the other network's loss terms
        out = {"loss": total, **{key: v / counts[key] for key, v in sums.items()}}
        return {**out, "backward_done": True} if backward is not None else out

    def warmup_loss(self, k: int, batch) -> tuple[torch.Tensor, dict]:
        """CE on a weak view of the whole batch (+ negative entropy for asymmetric noise)."""
        logits = self.nets[k](batch.x if k == 0 else batch.weak())
        ce = F.cross_entropy(logits.float(), batch.y)
        loss = ce + negative_entropy(logits) if self.hp.conf_penalty else ce
        return loss, {"ce": ce.detach()}

    def semi_loss(self, k: int, batch, epoch: int, progress: float) -> tuple[torch.Tensor, dict]:
        """Network k's MixMatch loss on the batch's labelled members plus as many unlabelled samples."""
        hp = self.hp
        net, partner = self.nets[k], self.nets[1 - k]
        lab, w_all = self.labelled_mask(batch.index, k)
        xi, wx = batch.index[lab], w_all[lab]
        b = len(xi)
        if b == 0:  # nothing labelled in this batch: no MixMatch step for this network
            return sum(p.sum() for p in net.parameters()) * 0.0, {"labelled": 0.0}
        ui = self.draw_unlabelled(k, b)
        xb, ub = self.ctx.batch_of(xi), self.ctx.batch_of(ui)
        views = SplitViews(xb, ub)
        with torch.no_grad():
            # the trained network guesses in train mode, the partner in eval mode (as officially)
            if len(ui):
                pu = [F.softmax(net(v).float(), 1) for v in views.u_weak]
                with eval_mode(partner):
                    pu += [F.softmax(partner(v).float(), 1) for v in views.u_weak]
                tu = co_guess(pu, hp.temperature)
            else:
                tu = torch.zeros(0, self.num_classes, device=xi.device)
            px = [F.softmax(net(v).float(), 1) for v in views.x_weak]
            tx = co_refine(px, xb.y, wx, hp.temperature)
        inputs = torch.cat(views.mix_inputs(hp.mix_views))
        targets = torch.cat([tx, tx, tu, tu])
        lam = sample_mix_lambda(hp.alpha)
        perm = torch.randperm(len(inputs)).to(inputs.device)
        mixed_x, mixed_t = mixup(inputs, targets, lam, perm)
        logits = net(mixed_x)
        lx, lu = semi_losses(logits[:2 * b], mixed_t[:2 * b], logits[2 * b:], mixed_t[2 * b:])
        lam_u = hp.lambda_u * linear_rampup(progress, hp.warmup_epochs, hp.rampup_epochs)
        penalty = uniform_prior_penalty(logits)
        loss = lx + lam_u * lu + penalty
        logs = {"lx": lx.detach(), "lu": lu.detach(), "lambda_u": lam_u, "penalty": penalty.detach(),
                "labelled": b / len(batch)}
        extra = self.extra_loss(k, xb, ub, views, epoch)
        if extra is not None:
            loss = loss + extra[0]
            logs.update(extra[1])
        return loss, logs

    def extra_loss(self, k: int, xb, ub, views: SplitViews, epoch: int) -> tuple[torch.Tensor, dict] | None:
        """Hook for an added term on the step's X and U samples (the PLR plug-in); None = nothing."""
        return None

    def predict_logits(self, x):
        return sum(net(x) for net in self.nets)

    def on_fit_end(self, ctx):
        # refit the selection on the final networks: the clean scores then describe the model returned
        outs = self.run_selection(ctx, ctx.num_epochs)
        logits = sum(self.logits_from_outputs(outs))
        self.final_probs = torch.softmax(logits.float(), dim=1)

    # ------------------------------------------------------------------ outputs
    def health(self, epoch):
        """Each network's clean split of this epoch and its posteriors; nothing during warm-up."""
        if epoch < self.hp.warmup_epochs or int(self.num_fits) == 0:
            return {}
        out: dict = {}
        for k in range(self.num_nets):
            w = self.clean_prob[:, k].cpu().numpy().astype(np.float64)
            out[f"clean_split_net{k + 1}"] = w > self.hp.p_threshold
            out[f"clean_prob_net{k + 1}"] = w
        return out

    def clean_scores(self, labels):
        if int(self.num_fits) == 0:
            return None
        return self.clean_prob.mean(dim=1).cpu().numpy().astype(np.float64)

    def noisy_flags(self, labels):
        scores = self.clean_scores(labels)
        return None if scores is None else ~(scores > self.hp.p_threshold)

    def flag_reason(self):
        return (f"clean posterior of the low-loss component of a 1-D GMM on normalised CE, averaged over "
                f"the two networks, <= {self.hp.p_threshold}")
