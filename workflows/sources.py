"""What an operator sends as a desired state: one file or a folder's files, and which resources to run.

The CLI reads the files and checks them here, then sends them as they are (each with its name), so that
the engine, which checks them again, reports every problem at the file and line it is in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field

from common.errors import BadInput
from workflows.limits import LIMITS, Limits, too_many_bytes
from workflows.registry import Registry
from workflows.spec import DesiredState, Problem, SpecError, load_texts, select

# The files of a folder that make its desired state: sorted by name, not in subfolders.
PATTERNS = ("*.yaml", "*.yml")


class SourceFile(BaseModel):
    """One desired-state document and the name its problems are reported under."""

    filename: str
    source: str


class DesiredInput(BaseModel):
    """A desired state as submitted: its files, and `limit`, the only resources to run (with what they
    run after); none: all."""

    files: list[SourceFile] = Field(min_length=1)
    limit: list[str] = Field(default_factory=list)
    # Variables over the files' `vars:`: --vars-file's, then --var's on top.
    vars: dict[str, Any] = Field(default_factory=dict)


def read_path(path: str | Path, limits: Limits = LIMITS) -> list[SourceFile]:
    """The desired-state file at `path`, or the `*.yaml` and `*.yml` files of the folder (sorted by name,
    not recursive). SpecError when there is none or one cannot be read."""
    path = Path(path)
    if path.is_dir():
        found = sorted({p for pattern in PATTERNS for p in path.glob(pattern) if p.is_file()})
        if not found:
            message = "is a folder without *.yaml or *.yml files: put the desired state's files in it"
            raise SpecError([Problem(file=str(path), message=message)])
        return [_read(p, limits) for p in found]
    return [_read(path, limits)]


def _read(path: Path, limits: Limits) -> SourceFile:
    try:
        with open(path, "rb") as f:
            data = f.read(limits.max_bytes + 1)
    except OSError as exc:
        message = f"cannot read the file ({exc.strerror or exc}): check the path and its permissions"
        raise SpecError([Problem(file=str(path), message=message)]) from None
    if len(data) > limits.max_bytes:
        raise SpecError([Problem(file=str(path), message=too_many_bytes(limits.max_bytes))])
    try:
        return SourceFile(filename=str(path), source=data.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        byte = f"byte 0x{data[exc.start]:02x} at offset {exc.start}"
        message = f"the file is not UTF-8 text ({byte}): save it as UTF-8"
        raise SpecError([Problem(file=str(path), line=line, message=message)]) from None


def load_input(given: DesiredInput, registry: Registry, limits: Limits = LIMITS) -> DesiredState:
    """Check every file as one desired state, then keep what `limit` names (workflows.spec.select)."""
    desired = load_texts([(f.filename, f.source) for f in given.files], registry, limits, given.vars)
    return select(desired, given.limit)


def as_input(source: str | DesiredInput, filename: str = "<api>") -> DesiredInput:
    """A desired state given as one document's text, or already as an input."""
    if isinstance(source, DesiredInput):
        return source
    return DesiredInput(files=[SourceFile(filename=filename, source=source)])


def stored_source(given: DesiredInput) -> str:
    """The text the store keeps of a submission: the one file's, or every file's after a comment naming it."""
    if len(given.files) == 1 and not given.limit and not given.vars:
        return given.files[0].source
    parts = [f"# --limit {' '.join(given.limit)}\n"] if given.limit else []
    parts += [f"# --var {name}={value}\n" for name, value in given.vars.items()]
    parts += [f"# file: {f.filename}\n{f.source}" for f in given.files]
    return "\n".join(parts)


def parse_vars(given: tuple[str, ...] | list[str]) -> dict[str, str]:
    """`--var NAME=VALUE` options as variables (strings); the last of one name wins."""
    variables: dict[str, str] = {}
    for entry in given:
        name, equals, value = entry.partition("=")
        if not (equals and name.strip()):
            raise BadInput(f"--var {entry!r}: write it as NAME=VALUE, e.g. --var port=8080")
        variables[name.strip()] = value
    return variables


def read_vars_file(path: str | Path) -> dict[str, Any]:
    """The variables of a `--vars-file`: a YAML mapping of names to values."""
    try:
        value = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise BadInput(f"--vars-file {path}: cannot read it ({exc.strerror or exc})") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise BadInput(f"--vars-file {path}: not a YAML file ({exc}): fix its syntax") from None
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(key, str) for key in value):
        raise BadInput(
            f"--vars-file {path}: must be a mapping of variable names to values, e.g. `port: 8080`"
        )
    return value
