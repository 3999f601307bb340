"""noisyfit: learning with noisy labels — robust training, label audit and an honest bench."""

__version__ = "0.1.0"
