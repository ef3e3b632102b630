"""The version of seawall, read by the build backend and by ``seawall.__version__``."""

__version__ = "0.1.0.dev0"
