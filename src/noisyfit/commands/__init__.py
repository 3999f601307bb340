"""Sub-commands of the `noisyfit` CLI: each module has `register(subparsers)`."""
