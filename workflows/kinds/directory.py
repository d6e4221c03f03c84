"""The `directory` kind: a directory that exists with the given mode."""

from __future__ import annotations

import os
import stat

from pydantic import BaseModel, ConfigDict, Field

from common.models import Change
from workflows.context import StepContext
from workflows.kinds._common import AbsolutePath, OctalMode, host_error, mode_bits, mode_of, stat_or_none
from workflows.kinds.paths import confine, path_identity
from workflows.registry import Provider, StepError


class DirectorySpec(BaseModel):
    """A directory's path and permission bits."""

    model_config = ConfigDict(extra="forbid")

    path: AbsolutePath = Field(description="The directory; missing parents are created too.")
    mode: OctalMode = Field(default="0755", description="Its permission bits (its contents are left alone).")


class DirectoryProvider(Provider[DirectorySpec]):
    """Creates a directory (and missing parents) and keeps its mode; never touches its contents.

    It acts only under the agent's allowed paths, on the path with its symlinks resolved.
    """

    kind = "directory"
    spec_model = DirectorySpec

    def identity(self, spec: DirectorySpec) -> str | None:
        return path_identity(spec.path)

    def check(self, spec: DirectorySpec, ctx: StepContext) -> Change:
        st = stat_or_none(confine(spec.path, ctx))
        if st is None:
            return Change(action="create", diff=f"create directory {spec.path}\nmode {spec.mode}")
        if not stat.S_ISDIR(st.st_mode):
            raise StepError(
                f"{spec.path} exists and is not a directory: remove it or choose another path",
                retryable=False,
            )
        if mode_of(st) != spec.mode:
            return Change(action="update", diff=f"mode {mode_of(st)} -> {spec.mode}")
        return Change(action="none")

    def apply(self, spec: DirectorySpec, change: Change, ctx: StepContext) -> None:
        path = confine(spec.path, ctx)
        try:
            os.makedirs(path, exist_ok=True)
        except (FileExistsError, NotADirectoryError) as exc:
            raise StepError(
                f"cannot create directory {spec.path}: it or one of its parents exists and is not a "
                f"directory; remove it or choose another path",
                retryable=False,
            ) from exc
        except OSError as exc:
            raise host_error(exc, f"cannot create directory {spec.path}") from exc
        try:
            # makedirs applies the umask; chmod sets exactly the bits asked for.
            os.chmod(path, mode_bits(spec.mode))
        except OSError as exc:
            raise host_error(exc, f"cannot chmod {spec.path} to {spec.mode}") from exc
