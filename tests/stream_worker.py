"""Run by tests/test_streaming.py in its own process (so it can be killed, or run under torchrun).

``stream_worker.py FOLDER OUT [--hang-at EPOCH STEP] [--resume] [--stream true|false] [--ddp]``
"""

import argparse
import faulthandler
import sys
import time

import numpy as np
import torch

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from conftest import tiny_cfg  # noqa: E402
from noisyfit.engine.trainer import Trainer  # noqa: E402
from noisyfit.methods.base import register_method  # noqa: E402
from noisyfit.methods.ce import CrossEntropy  # noqa: E402

HANG_AT: tuple[int, int] | None = None


@register_method("_hang_probe")
class HangingCE(CrossEntropy):
    """CE that stops dead (sleeps) at one step, so the test can kill the process at a known point."""

    def on_epoch_start(self, epoch, ctx):
        super().on_epoch_start(epoch, ctx)
        self._step = 0

    def load_transient_state(self, state):
        super().load_transient_state(state)
        self._step = None  # resumed inside an epoch: never hang again

    def training_step(self, batch, epoch):
        if HANG_AT is not None and self._step is not None and (epoch, self._step) == HANG_AT:
            time.sleep(600)
        if self._step is not None:
            self._step += 1
        return super().training_step(batch, epoch)


@register_method("_plain_probe")
class PlainCE(CrossEntropy):
    """CE on the un-augmented images: every rank sees the same pixels, so 1 and 2 processes can be compared."""

    def training_step(self, batch, epoch):
        return {"loss": self.loss(self.net(batch.plain()), batch.y).mean()}


def main() -> None:
    global HANG_AT
    p = argparse.ArgumentParser()
    p.add_argument("folder")
    p.add_argument("out")
    p.add_argument("--hang-at", nargs=2, type=int)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--stream", default="true")
    p.add_argument("--ddp", action="store_true")
    a = p.parse_args()
    if a.ddp:  # a hang prints every thread's stack (and exits) well before the test's own timeout
        faulthandler.dump_traceback_later(240, exit=True)
    HANG_AT = tuple(a.hang_at) if a.hang_at else None
    torch.set_num_threads(1)
    common = [f"data.dataset=folder:{a.folder}", f"data.stream={a.stream}", "data.workers=2", "data.noise=sym:0.3",
              "train.epochs=2", "train.batch_size=16", "data.val_fraction=0.1"]
    if a.ddp:
        cfg = tiny_cfg(*common, "method.name=_plain_probe", "model.args.batchnorm=false", "train.checkpoint=false")
        t = Trainer(cfg, None)
        r = t.fit()
        np.savez(f"{a.out}/rank{t.rank}.npz", world=t.world_size, test_acc=r["final"]["test_acc"],
                 weights=torch.cat([p.detach().flatten() for p in t.method.parameters()]).numpy(),
                 losses=np.array([e["train_loss"] for e in r["epochs"]]),
                 probs=t.method.final_probs.numpy())
        return
    Trainer(hang_cfg(a.folder, a.stream), a.out, resume=a.resume).fit()


def hang_cfg(folder, stream="true"):
    return tiny_cfg(f"data.dataset=folder:{folder}", f"data.stream={stream}", "data.workers=2", "data.noise=sym:0.3",
                    "train.epochs=2", "train.batch_size=16", "data.val_fraction=0.1", "method.name=_hang_probe",
                    "model.backbone=fastcnn", "model.args.widths=[8,16,16]", "model.args.stem_width=8",
                    "train.checkpoint_minutes=1e-9")


if __name__ == "__main__":
    main()
