"""`noisyfit demo`."""

from __future__ import annotations

from noisyfit.commands.summary import print_summary


def register(sub) -> None:
    p = sub.add_parser("demo", help="digits with 40%% symmetric noise: CE against a robust method (< 1 min)")
    p.add_argument("--out", help="keep the run folders here")
    p.add_argument("--seed", type=int, default=0, help="seed of the noise, the split and the training (default 0)")
    p.add_argument("--methods", default="ce,gce",
                   help="methods to compare, comma-separated (default ce,gce; `noisyfit list` shows them all)")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args) -> int:
    from noisyfit.demo import run_demo

    rows = run_demo(methods=args.methods.split(","), seed=args.seed, out=args.out)
    print_summary(rows, title="digits, 40% symmetric noise (sym:0.4), MLP, 30 epochs")
    return 0
