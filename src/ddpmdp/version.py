"""The package version (one place; ``ddpmdp.__version__`` re-exports it)."""
__version__ = "0.1.0"
