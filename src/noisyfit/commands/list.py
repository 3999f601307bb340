"""`noisyfit list`: the names the other commands accept."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("list", help="list methods, backbones, datasets, noise kinds and presets")
    p.set_defaults(func=cmd_list)


def cmd_list(args) -> int:
    from noisyfit.config import list_presets
    from noisyfit.data.noise import NOISE_KINDS
    from noisyfit.data.sources import list_datasets
    from noisyfit.methods import list_methods
    from noisyfit.models.backbones import list_backbones

    print("methods:   " + ", ".join(m for m in list_methods() if not m.startswith("_")))
    print("backbones: " + ", ".join(list_backbones()))
    print("noise:     " + ", ".join(NOISE_KINDS))
    print("presets:   " + ", ".join(list_presets()))
    print("datasets:")
    for name, desc in list_datasets().items():
        print(f"  {name:28s} {desc}")
    return 0
