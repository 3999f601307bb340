"""`noisyfit list`: the names the other commands accept, one per line with what it is."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("list", help="list methods, backbones, datasets, noise kinds and presets")
    p.set_defaults(func=cmd_list)


def presets_by_method(names: list[str]) -> dict[str, list[str]]:
    """``{"ce": ["cpu-cifar10n", ...], ...}`` from preset names ``method/variant``, in the given order."""
    grouped: dict[str, list[str]] = {}
    for name in names:
        head, _, tail = name.partition("/")
        grouped.setdefault(head, []).append(tail or head)
    return grouped


def cmd_list(args) -> int:
    from noisyfit.config import list_presets
    from noisyfit.data.noise import NOISE_KINDS
    from noisyfit.data.sources import list_datasets
    from noisyfit.methods import get_method_class, list_methods
    from noisyfit.models.backbones import list_backbones

    print("methods (--method NAME; your own: --method path/file.py:ClassName, README 'Methods'):")
    names = [m for m in list_methods() if not m.startswith("_")]
    width = max(15, *(len(n) for n in names))
    for name in names:
        print(f"  {name:{width}s} {get_method_class(name).summary}")
    print("backbones (--backbone NAME): " + ", ".join(list_backbones()))
    print("noise kinds (--noise KIND:RATE, noisyfit noise --help): " + ", ".join(NOISE_KINDS))
    print("presets (--config METHOD/VARIANT, e.g. --config ce/cpu-cifar10n; protocols/ hold the bench suites' shared settings):")
    for head, tails in presets_by_method(list_presets()).items():
        print(f"  {head + '/':15s} " + ", ".join(tails))
    print("datasets (--dataset NAME):")
    for name, desc in list_datasets().items():
        print(f"  {name:28s} {desc}")
    return 0
