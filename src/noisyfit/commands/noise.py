"""`noisyfit noise`."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("noise", help="write a noisy-label file from a data set and a noise spec",
                       description="Plant synthetic label noise in a data set's training labels and write them to a "
                                   "file for `noisyfit train --noisy-labels`. The noise is drawn from the clean labels "
                                   "when the data set has them (CIFAR-10N: CIFAR-10's, not its human labels), else "
                                   "from its given labels.")
    p.add_argument("--dataset", required=True, help="a data set as `noisyfit train --dataset` takes it")
    p.add_argument("--data-dir", help="data folder (default: $NOISYFIT_DATA_DIR or ../shared/data)")
    p.add_argument("--download", action="store_true",
                   help="fetch the official CIFAR archive when it is not in the data dir (= data.download=true)")
    p.add_argument("--spec", required=True,
                   help="sym:R (flip to another class), symall:R (resample over all classes), asym:R, "
                        "pairflip:R, idn:R, matrix:PATH.npy")
    p.add_argument("--seed", type=int, default=0, help="seed of the noise draw (default 0)")
    p.add_argument("--out", required=True, help="output .npz (use with `noisyfit train --noisy-labels`)")
    p.set_defaults(func=cmd_noise)


def cmd_noise(args) -> int:
    from noisyfit.data.noise import apply_noise, save_noisy_labels
    from noisyfit.data.sources import load_dataset

    splits = load_dataset(args.dataset, args.data_dir, download=args.download)
    _, result = apply_noise(splits.train, args.spec, seed=args.seed)
    path = save_noisy_labels(args.out, result, splits.train.name)
    start = "clean labels" if splits.train.true_labels is not None else "given labels"
    print(f"{path}: {len(result.labels)} labels, spec {result.spec} drawn from {splits.train.name}'s {start}, "
          f"realised noise rate {result.noise_rate:.4f} (against those labels)")
    return 0
