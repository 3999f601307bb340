"""noisyfit: learning with noisy labels — robust training, label audit and an honest bench."""

__version__ = "0.1.0"

__all__ = ["NoisyClassifier", "__version__"]


def __getattr__(name: str):
    # `noisyfit.NoisyClassifier` without importing torch and scikit-learn for `import noisyfit` (the CLI's start)
    if name == "NoisyClassifier":
        from noisyfit.estimator import NoisyClassifier

        return NoisyClassifier
    raise AttributeError(f"module 'noisyfit' has no attribute {name!r}")
