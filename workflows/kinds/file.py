"""The `file` kind: a file that holds exactly the given content and mode."""

from __future__ import annotations

import contextlib
import difflib
import os
import stat
import tempfile

from pydantic import BaseModel, ConfigDict, Field

from common.models import Change
from workflows.context import StepContext
from workflows.kinds._common import AbsolutePath, OctalMode, host_error, mode_bits, mode_of, stat_or_none
from workflows.kinds.paths import confine, path_identity
from workflows.registry import Provider, StepError

_NO_EOL = "\\ No newline at end of file\n"


class FileSpec(BaseModel):
    """A file's desired content (written as UTF-8) and permission bits."""

    model_config = ConfigDict(extra="forbid")

    path: AbsolutePath = Field(description="The file; a symlink there is followed.")
    content: str = Field(description="Exactly what the file holds, written as UTF-8.")
    mode: OctalMode = Field(default="0644", description="Its permission bits.")


class FileProvider(Provider[FileSpec]):
    """Writes a file atomically when its bytes differ, and only chmods it when only the mode differs.

    A symlink at `path` is followed: the file it points to is the one kept compliant, if it lies under
    the agent's allowed paths (workflows.kinds.paths).
    """

    kind = "file"
    spec_model = FileSpec

    def identity(self, spec: FileSpec) -> str | None:
        return path_identity(spec.path)

    def check(self, spec: FileSpec, ctx: StepContext) -> Change:
        desired = spec.content.encode("utf-8")
        current = _observe(confine(spec.path, ctx))
        if current is None:
            return Change(action="create", diff=_create_diff(spec.path, desired, spec.mode))
        content, st = current
        parts: list[str] = []
        if content != desired:
            parts.append(_content_diff(spec.path, content, desired))
        if mode_of(st) != spec.mode:
            parts.append(f"mode {mode_of(st)} -> {spec.mode}")
        if not parts:
            return Change(action="none")
        return Change(action="update", diff="".join(parts).rstrip("\n"))

    def apply(self, spec: FileSpec, change: Change, ctx: StepContext) -> None:
        target = confine(spec.path, ctx)
        desired = spec.content.encode("utf-8")
        current = _observe(target)
        if current is not None and current[0] == desired:
            # Only the mode differs: rewriting would move the mtime and wake whatever watches the file.
            if mode_of(current[1]) != spec.mode:
                _chmod(target, spec.mode)
            return
        _write_atomically(target, desired, mode_bits(spec.mode), None if current is None else current[1])


def _observe(path: str) -> tuple[bytes, os.stat_result] | None:
    """The bytes and stat of the regular file at `path`, or None when there is none."""
    st = stat_or_none(path)
    if st is None:
        return None
    if not stat.S_ISREG(st.st_mode):
        raise StepError(
            f"{path} exists and is not a regular file: remove it or choose another path", retryable=False
        )
    try:
        with open(path, "rb") as f:
            return f.read(), st
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise host_error(exc, f"cannot read {path}") from exc


def _create_diff(path: str, desired: bytes, mode: str) -> str:
    if not desired:
        return f"create empty file {path}\nmode {mode}"
    return _content_diff(path, None, desired) + f"mode {mode}"


def _content_diff(path: str, current: bytes | None, desired: bytes) -> str:
    before = [] if current is None else _lines(current.decode("utf-8", "replace"))
    after = _lines(desired.decode("utf-8"))
    fromfile = "/dev/null" if current is None else f"{path} (current)"
    diff = difflib.unified_diff(before, after, fromfile, f"{path} (desired)")
    text = "".join(line if line.endswith("\n") else f"{line}\n{_NO_EOL}" for line in diff)
    # Bytes that are not UTF-8 can differ yet decode alike; still say that something differs.
    return text or f"{path}: content differs in bytes that are not UTF-8 text\n"


def _lines(text: str) -> list[str]:
    """Lines split on \\n only (not \\r or form feeds, as str.splitlines would), keeping their ends."""
    parts = text.split("\n")
    lines = [part + "\n" for part in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def _chmod(path: str, mode: str) -> None:
    try:
        os.chmod(path, mode_bits(mode))
    except OSError as exc:
        raise host_error(exc, f"cannot chmod {path} to {mode}") from exc


def _write_atomically(path: str, data: bytes, mode: int, previous: os.stat_result | None) -> None:
    """Write a temporary file beside `path`, fsync it and rename it over `path`: readers never see half."""
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        raise StepError(
            f"directory {parent} does not exist: add a `directory` resource for it "
            f"and list it in this file's `depends_on`",
            retryable=False,
        )
    try:
        fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{os.path.basename(path)[:100]}.", suffix=".tmp")
    except OSError as exc:
        raise host_error(exc, f"cannot write in {parent}") from exc
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), mode)
            _keep_owner(f.fileno(), previous)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise host_error(exc, f"cannot write {path}") from exc
        raise
    _fsync_directory(parent)


def _keep_owner(fd: int, previous: os.stat_result | None) -> None:
    """Give the new file the owner of the one it replaces, as an in-place write would (when allowed)."""
    if previous is None or (previous.st_uid, previous.st_gid) == (os.geteuid(), os.getegid()):
        return
    with contextlib.suppress(PermissionError):
        os.fchown(fd, previous.st_uid, previous.st_gid)


def _fsync_directory(path: str) -> None:
    """Make the rename durable; some filesystems cannot fsync a directory, which is not an error."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
