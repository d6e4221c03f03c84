"""The `line` kind: a line that a text file must contain (appended when it is missing).

An example of a kind from a package: docs/writing-a-kind.md walks through it.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from common.models import Change
from workflows.context import StepContext
from workflows.registry import Provider, StepError


class LineSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str = Field(pattern=r"^/")
    line: str = Field(min_length=1, pattern=r"^[^\n]*$")


class LineProvider(Provider[LineSpec]):
    kind = "line"
    spec_model = LineSpec

    def check(self, spec: LineSpec, ctx: StepContext) -> Change:
        lines = _read(spec.path)
        if lines is None:
            return Change(action="create", diff=f"+{spec.line}")
        if spec.line in lines:
            return Change(action="none")
        return Change(action="update", diff=f"+{spec.line}")

    def apply(self, spec: LineSpec, change: Change, ctx: StepContext) -> None:
        lines = _read(spec.path) or []
        ctx.progress(50, f"adding a line to {spec.path}")
        try:
            with open(spec.path, "a", encoding="utf-8") as f:
                if lines and not _ends_with_newline(spec.path):
                    f.write("\n")
                f.write(spec.line + "\n")
        except OSError as exc:
            raise StepError(f"cannot write {spec.path}: {exc.strerror}", retryable=False) from exc


def _read(path: str) -> list[str] | None:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().splitlines()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StepError(f"cannot read {path}: {exc.strerror}", retryable=False) from exc


def _ends_with_newline(path: str) -> bool:
    with open(path, "rb") as f:
        f.seek(0, 2)
        if f.tell() == 0:
            return True
        f.seek(-1, 2)
        return f.read(1) == b"\n"
