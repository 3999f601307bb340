"""Training methods. Importing this package registers the built-in ones."""

from noisyfit.methods.base import Method, TrainContext, get_method_class, list_methods, register_method

__all__ = ["Method", "TrainContext", "get_method_class", "list_methods", "register_method"]
