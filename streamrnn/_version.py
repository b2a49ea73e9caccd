"""The package version, read from the installed distribution's metadata."""

from importlib.metadata import PackageNotFoundError, version

__all__ = ["__version__"]

try:
    __version__ = version("streamrnn")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"
