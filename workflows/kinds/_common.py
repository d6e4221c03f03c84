"""Spec field types and host helpers shared by the built-in kinds."""

from __future__ import annotations

import os
import re
import stat
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator

from workflows.registry import StepError
from workflows.shown import shown

_OCTAL_MODE = re.compile(r"0?[0-7]{3,4}")


def _absolute(value: str) -> str:
    if "\x00" in value:
        raise ValueError("a path cannot contain a NUL character")
    if not os.path.isabs(value):
        raise ValueError(f"must be an absolute path, got {shown(value)}: write it from /")
    if ".." in value.split("/"):
        raise ValueError(
            f"must not contain `..` (a path that climbs out of its folder), got {shown(value)}: write "
            "the path it leads to"
        )
    return value


def _octal_mode(value: Any) -> Any:
    # YAML reads an unquoted 0644 as the integer 420 and 644 as decimal 644: only a string is unambiguous.
    if isinstance(value, int) and not isinstance(value, bool):
        raise ValueError(_unquoted_mode(value))
    if not isinstance(value, str):
        raise ValueError(f'must be a quoted octal string like "0644", got {shown(value)}')
    if not _OCTAL_MODE.fullmatch(value) or int(value, 8) > 0o7777:
        raise ValueError(f'must be octal permission bits like "0644" or "0755", got {shown(value)}')
    return f"{int(value, 8):04o}"


def _unquoted_mode(value: int) -> str:
    """What to write instead of an unquoted mode: YAML 1.1 reads 0644 as the octal number 420, and 644 as
    the decimal number 644."""
    digits = str(value)
    if value > 0o777 and set(digits) <= set("01234567") and len(digits) <= 4:  # 644 written for "0644"
        return f'mode {value} is a number, not a quoted octal string; write mode: "{value:04d}"'
    if 0 <= value <= 0o7777:
        return (
            f"mode {value} is the number YAML reads from {value:04o} without quotes; "
            f'write mode: "{value:04o}"'
        )
    return f'mode must be a quoted octal string like "0644", got the number {value}'


AbsolutePath = Annotated[str, AfterValidator(_absolute)]
"""An absolute filesystem path."""

OctalMode = Annotated[str, BeforeValidator(_octal_mode)]
"""Permission bits as an octal string, normalised to four digits ("644" becomes "0644")."""


def mode_bits(mode: str) -> int:
    """The integer permission bits of an `OctalMode` string."""
    return int(mode, 8)


def mode_of(st: os.stat_result) -> str:
    """The permission bits of a stat result as a four-digit octal string."""
    return f"{stat.S_IMODE(st.st_mode):04o}"


def stat_or_none(path: str) -> os.stat_result | None:
    """`os.stat` of `path` (following symlinks), or None when nothing is there."""
    try:
        return os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise host_error(exc, f"cannot inspect {path}") from exc


def host_error(exc: OSError, doing: str) -> StepError:
    """A StepError for an OSError; permission problems are not retried since a retry cannot fix them."""
    if isinstance(exc, PermissionError):
        return StepError(f"{doing}: permission denied (run the agent as a user allowed to)", retryable=False)
    return StepError(f"{doing}: {exc.strerror or exc}")
