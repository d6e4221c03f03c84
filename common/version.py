"""The installed Converge version, as the engine and the agents report it."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


def converge_version() -> str:
    """The version of the installed `converge` distribution, or `0+unknown` when run from a bare tree."""
    try:
        return version("converge")
    except PackageNotFoundError:
        return "0+unknown"
