"""Run by tests/test_distributed.py, once plainly and once under torchrun with 2 processes."""

import sys

import numpy as np
import torch

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from conftest import blobs, tiny_cfg  # noqa: E402
from noisyfit.data.labeled import DatasetSplits, LabeledData  # noqa: E402
from noisyfit.engine.trainer import Trainer  # noqa: E402
from noisyfit.methods.base import register_method  # noqa: E402
from noisyfit.methods.ce import CrossEntropy  # noqa: E402


@register_method("_ddp_probe")
class LossMemory(CrossEntropy):
    """CE that remembers each sample's last loss and visit epoch: per-sample state to gather."""

    per_sample_state = ("last_loss", "seen_epoch")

    def __init__(self, *a):
        super().__init__(*a)
        self.register_buffer("last_loss", torch.zeros(self.num_samples))
        self.register_buffer("seen_epoch", torch.full((self.num_samples,), -1, dtype=torch.long))

    def training_step(self, batch, epoch):
        losses = self.loss(self.net(batch.x), batch.y)
        self.last_loss[batch.index] = losses.detach()
        self.seen_epoch[batch.index] = epoch
        return {"loss": losses.mean()}


if __name__ == "__main__":
    out = sys.argv[1]
    torch.set_num_threads(1)
    x, y = blobs(512)
    xt, yt = blobs(128, seed=3)
    names = ["a", "b", "c"]
    splits = DatasetSplits(LabeledData(x, y, names), LabeledData(xt, yt, names))
    cfg = tiny_cfg("method.name=_ddp_probe", "model.args.batchnorm=false", "train.epochs=3",
                   "train.batch_size=64", "data.val_fraction=0.125", "train.checkpoint=false")
    t = Trainer(cfg, None, splits=splits)
    r = t.fit()
    m = t.method
    np.savez(f"{out}/rank{t.rank}.npz", last_loss=m.last_loss.numpy(), seen=m.seen_epoch.numpy(),
             weights=torch.cat([p.detach().flatten() for p in m.parameters()]).numpy(),
             clean=m.clean_scores(t.data.train.labels), test_acc=r["final"]["test_acc"],
             losses=np.array([e["train_loss"] for e in r["epochs"]]), world=t.world_size)
