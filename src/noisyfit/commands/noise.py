"""`noisyfit noise`."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("noise", help="write a noisy-label file from a data set and a noise spec")
    p.add_argument("--dataset", required=True)
    p.add_argument("--data-dir")
    p.add_argument("--download", action="store_true",
                   help="fetch the official CIFAR archive when it is not in the data dir (= data.download=true)")
    p.add_argument("--spec", required=True,
                   help="sym:R (flip to another class), symall:R (resample over all classes), asym:R, "
                        "pairflip:R, idn:R, matrix:PATH.npy")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output .npz (use with `noisyfit train --noisy-labels`)")
    p.set_defaults(func=cmd_noise)


def cmd_noise(args) -> int:
    from noisyfit.data.noise import apply_noise, save_noisy_labels
    from noisyfit.data.sources import load_dataset

    splits = load_dataset(args.dataset, args.data_dir, download=args.download)
    _, result = apply_noise(splits.train, args.spec, seed=args.seed)
    path = save_noisy_labels(args.out, result, splits.train.name)
    print(f"{path}: {len(result.labels)} labels, spec {result.spec}, realised noise rate "
          f"{result.noise_rate:.4f}")
    return 0
