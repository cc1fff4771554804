"""The version of t2t (one place; the package, checkpoints and plugins read it here)."""

__version__ = "0.1.0"
