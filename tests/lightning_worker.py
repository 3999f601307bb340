"""Run by tests/test_lightning.py in its own process: ELR on a seeded blob set inside Lightning, on one process or
under ``torchrun --nproc_per_node=2`` (Lightning's DDP strategy then picks up the torchrun environment).

``lightning_worker.py OUT``: writes ``OUT/rank{r}.npz`` with the weights, ELR's per-sample targets and the final
per-sample probabilities.
"""

import faulthandler
import os
import sys
import warnings

import numpy as np
import torch

faulthandler.dump_traceback_later(240, exit=True)  # a hang prints every thread's stack instead of a bare timeout


def main() -> None:
    import lightning as L

    from noisyfit.data.training_set import TrainingSet
    from noisyfit.integrations.lightning import NoisyMethodModule

    out = sys.argv[1]
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 3.0, (3, 8))
    y = rng.integers(0, 3, 512)
    x = (centres[y] + rng.normal(0, 1, (512, 8))).astype(np.float32)
    noisy = np.where(rng.random(512) < 0.3, rng.integers(0, 3, 512), y)
    torch.manual_seed(0)  # the same initial weights on every rank and in the one-process run
    module = NoisyMethodModule.create(
        "elr", TrainingSet.from_tensors(torch.from_numpy(x), torch.from_numpy(noisy)), backbone="mlp",
        backbone_args={"hidden": [32], "batchnorm": False},  # no per-rank batch statistics: runs comparable
        num_epochs=3, batch_size=64, optim={"name": "sgd", "lr": 0.05}, seed=0)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Lightning's advice on workers and loggers
        trainer = L.Trainer(max_epochs=3, accelerator="cpu", devices=world, strategy="ddp" if world > 1 else "auto",
                            logger=False, enable_checkpointing=False, enable_progress_bar=False,
                            enable_model_summary=False)
        trainer.fit(module)
    m = module.method
    np.savez(f"{out}/rank{trainer.global_rank}.npz", world=trainer.world_size,
             weights=torch.cat([p.detach().flatten() for p in m.parameters()]).numpy(),
             targets=m.get_buffer(m.per_sample_state[0]).numpy(), probs=m.final_probs.numpy(),
             loss=float(trainer.callback_metrics["train_loss"]))


if __name__ == "__main__":
    main()
