"""Path confinement: the built-in kinds act only under the agent's allowed paths (its `allowed_paths`).

A step message comes from the engine, but the agent does not take the paths in it on trust: a path must lie
under an allowed path both as written and once its symlinks are resolved, so that neither `..` nor a
symlink planted inside an allowed folder leads a step out of it. (`..` is refused earlier still, by the
spec's `AbsolutePath`.) The check runs just before the provider acts, and the provider then acts on the
resolved path. What it cannot close: a symlink swapped in between the check and the action, by someone who
can already write under the allowed paths.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from workflows.context import StepContext
from workflows.registry import StepError

SETTING = "allowed_paths"
"""The agent setting that lists the allowed paths (agents.config.AgentSettings)."""


def confine(path: str, ctx: StepContext) -> str:
    """`path` with its symlinks resolved, if both it and that lie under one of `ctx.allowed_paths`.

    Raises a StepError that no retry can fix otherwise, naming the setting that would allow it.
    """
    allowed = [os.path.realpath(root) for root in ctx.allowed_paths]
    written = [os.path.normpath(root) for root in ctx.allowed_paths]  # an allowed path may be a symlink
    if not _under(os.path.normpath(path), written + allowed):
        raise StepError(
            f"{path} is outside the agent's allowed paths ({_listed(allowed)}): choose a path under one of "
            f"them, or add a folder to the agent setting `{SETTING}`",
            retryable=False,
        )
    resolved = os.path.realpath(path)
    if not _under(resolved, allowed):
        raise StepError(
            f"{path} leads through a symlink to {resolved}, outside the agent's allowed paths "
            f"({_listed(allowed)}): remove the symlink, or add a folder to the agent setting `{SETTING}`",
            retryable=False,
        )
    return resolved


def _under(path: str, roots: Sequence[str]) -> bool:
    return any(Path(path).is_relative_to(root) for root in roots)


def _listed(roots: Sequence[str]) -> str:
    return ", ".join(roots) if roots else "none"


def path_identity(path: str) -> str:
    """The identity (Provider.identity) of a path, normalized: `/srv//www/` and `/srv/www` are one path."""
    normal = os.path.normpath(path)
    return "path:" + ("/" + normal.lstrip("/") if normal.startswith("//") else normal)
