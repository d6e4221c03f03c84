"""The desired-state file: its pydantic models, and a loader that reports every problem with its line.

An operator fixes a file faster when one run lists everything that is wrong, each problem naming the file,
the line and the field, and saying what to do. So the loader never stops at the first problem: it checks
the header, every resource, its spec against its kind's provider, names, duplicates and dependencies, and
raises one `SpecError` holding them all.
"""

from __future__ import annotations

import bisect
import difflib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, NamedTuple

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from common.errors import BadInput
from common.names import valid_name
from workflows import templates, yamldoc
from workflows.context import LISTED_CREDENTIALS
from workflows.limits import LIMITS, Limits, TooLarge, too_deep, too_many_bytes, too_many_resources
from workflows.registry import Registry
from workflows.shown import named, shown
from workflows.yamldoc import Loc, Position

API_VERSION = "converge/v1"
# `scope: each`: one step per live agent of the resource's role (the engine expands it when it plans).
# Any other scope is one agent's id.
EACH = "each"

_MISSING_HINTS = {
    "apiVersion": f"add `apiVersion: {API_VERSION}` at the top",
    "kind": "add `kind: DesiredState` at the top",
    "metadata": "add `metadata: {name: <estate name>}` at the top",
    "metadata.name": "add `name: <estate name>` under metadata",
}
_LONGEST_CYCLE_SHOWN = 12
# What a value is, in the file's words, when it is not the mapping or list a place needs.
_TYPE_WORDS = {dict: "a mapping", list: "a list", str: "a string", int: "a number", float: "a number"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class RetryPolicy(_Strict):
    """How often a failed step is tried, and the first wait between tries (doubled each time)."""

    attempts: int = Field(default=3, ge=1)
    backoff_s: float = Field(default=2.0, ge=0)


class Resource(_Strict):
    """One thing to converge: a kind (its provider), a name unique within the kind, and the kind's spec."""

    kind: str
    name: str = Field(min_length=1)
    role: str | None = None
    scope: str | None = None
    depends_on: list[str] = Field(default_factory=list)
    # Runs only when one of these (`kind/name`) reported `changed: true` in the workflow; runs after them.
    on_change: list[str] = Field(default_factory=list)
    timeout_s: float | None = Field(default=None, gt=0)
    retry: RetryPolicy | None = None
    credentials: list[str] = Field(default_factory=list)
    spec: dict[str, Any] = Field(default_factory=dict)

    @property
    def ref(self) -> str:
        """The `kind/name` other resources use in `depends_on`."""
        return f"{self.kind}/{self.name}"

    @property
    def after(self) -> list[str]:
        """What it runs after: its `depends_on`, then the `on_change` triggers not among them."""
        return [*self.depends_on, *(ref for ref in self.on_change if ref not in self.depends_on)]


class Metadata(_Strict):
    """What names the estate."""

    name: str


class DesiredState(_Strict):
    """A whole desired-state file, as loaded and checked by `load_file`."""

    api_version: Literal["converge/v1"] = Field(alias="apiVersion")
    kind: Literal["DesiredState"]
    metadata: Metadata
    # The retry policy of every resource that does not set its own.
    retry: RetryPolicy | None = None
    # What templates see as `vars` (workflows.templates), under what --vars-file and --var give.
    vars: dict[str, Any] = Field(default_factory=dict)
    resources: list[Resource]


class Problem(BaseModel):
    """One thing wrong with a desired-state file; `field` is a path like `resources[2].spec.path`."""

    file: str
    line: int | None = None
    field: str = ""
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


class SpecError(BadInput):
    """A desired-state file cannot be used; `problems` lists everything found wrong with it."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(problem) for problem in problems))
        self.problems = problems


def load_file(path: str | Path, registry: Registry, limits: Limits = LIMITS) -> DesiredState:
    """Read, parse and check a desired-state file; raise `SpecError` listing every problem."""
    try:
        with open(path, "rb") as f:
            data = f.read(limits.max_bytes + 1)  # enough to know it is too big, however big it is
    except IsADirectoryError:
        message = "is a directory: name a desired-state file in it (docs/file-format.md describes one)"
        raise SpecError([Problem(file=str(path), message=message)]) from None
    except OSError as exc:
        reason = exc.strerror or str(exc)
        message = f"cannot read the file ({reason}): check the path and its permissions"
        raise SpecError([Problem(file=str(path), message=message)]) from None
    return load_text(data, str(path), registry, limits)


def load_text(
    data: bytes | str,
    filename: str,
    registry: Registry,
    limits: Limits = LIMITS,
    overrides: Mapping[str, Any] | None = None,
) -> DesiredState:
    """Parse and check a desired-state document; `filename` is only used in the problems reported.

    A document past one of `limits` (workflows.limits) is refused as soon as that is known. `overrides`
    are variables over the file's `vars:` (--vars-file, then --var).
    """
    if len(data) > limits.max_bytes:  # a character is at least one byte: too big before it is encoded
        raise SpecError([Problem(file=filename, message=too_many_bytes(limits.max_bytes))])
    return _load(_decode(data, filename, limits), filename, registry, limits, overrides or {})


def load_texts(
    files: Sequence[tuple[str, bytes | str]],
    registry: Registry,
    limits: Limits = LIMITS,
    overrides: Mapping[str, Any] | None = None,
) -> DesiredState:
    """Parse and check several documents (a folder's files) as one desired state.

    Each file is a whole document (apiVersion, kind, metadata, resources) naming the same estate; its
    `retry` is the default of its own resources. References, duplicates, cycles and conflicts are checked
    over all files together; every problem names the file and the line where it is.
    """
    if len(files) == 1:
        return load_text(files[0][1], files[0][0], registry, limits, overrides)
    if sum(len(data) for _, data in files) > limits.max_bytes:
        where = ", ".join(name for name, _ in files[:3]) + (", ..." if len(files) > 3 else "")
        raise SpecError([Problem(file=where, message=too_many_bytes(limits.max_bytes))])
    problems: list[Problem] = []
    parts: list[_Part] = []
    items: list[Any] = []
    headers: list[tuple[str, DesiredState]] = []
    for filename, data in files:
        try:
            document = _parse(_decode(data, filename, limits), filename, limits)
        except SpecError as exc:
            problems += exc.problems
            continue
        out = _Problems(filename, document.lines)
        header, own = _check_part(document, out, limits)
        problems += out.sorted()
        if header is not None:
            headers.append((filename, header))
        parts.append(_Part(filename, document.lines, len(items)))
        items += [_with_retry(item, header) for item in own]
    if len(items) > limits.max_resources:
        problems.append(Problem(file=parts[0].filename, message=too_many_resources(limits.max_resources)))
    resources: list[Resource] = []
    if parts:
        combined = _Problems(parts[0].filename, parts[0].lines, parts)
        variables, clashes = _merged_vars(headers)
        problems += clashes
        items = _rendered(items, {**variables, **(overrides or {})}, combined)
        resources = _check_resources(items, combined, registry)
        problems += combined.sorted()
    problems += _same_estate(headers)
    if problems or not headers:
        order = {name: number for number, (name, _) in enumerate(files)}
        problems.sort(key=lambda problem: order.get(problem.file, -1))
        raise SpecError(problems)
    merged = {**_merged_vars(headers)[0], **(overrides or {})}
    return headers[0][1].model_copy(update={"retry": None, "vars": merged, "resources": resources})


def _merged_vars(headers: list[tuple[str, DesiredState]]) -> tuple[dict[str, Any], list[Problem]]:
    """The `vars:` of all files; one variable given two values by two files is a problem."""
    merged: dict[str, Any] = {}
    owner: dict[str, str] = {}
    problems: list[Problem] = []
    for filename, header in headers:
        for name, value in header.vars.items():
            if name in merged and merged[name] != value:
                message = f"{named(name)} is also set, to another value, by {owner[name]}: set it in one file"
                problems.append(Problem(file=filename, field=f"vars.{name}", message=message))
                continue
            merged.setdefault(name, value)
            owner.setdefault(name, filename)
    return merged, problems


def _check_part(
    document: yamldoc.Document, out: _Problems, limits: Limits
) -> tuple[DesiredState | None, list[Any]]:
    """The header and the resource items of one file of several."""
    for repeated in document.repeated:
        message = (
            f"key {named(repeated.key)} appears twice in one mapping (first at line {repeated.first_line}), "
            "and YAML keeps only the last: remove one"
        )
        out.add_at(repeated.position, "", message)
    for loc in document.binary:
        out.add(loc, "is binary data (!!binary), which no field takes: write the value as text")
    value = document.value
    if not isinstance(value, dict):
        got = "nothing" if value is None else _TYPE_WORDS.get(type(value), shown(value))
        out.add((), f"the top level must be a mapping of apiVersion, kind, metadata and resources, got {got}")
        return None, []
    header = _check_header(value, out)
    return header, _resource_items(value, out, limits) or []


def _with_retry(item: Any, header: DesiredState | None) -> Any:
    """A resource of a file with its file's `retry` as its own, when it sets none."""
    if header is None or header.retry is None or not isinstance(item, dict) or "retry" in item:
        return item
    return {**item, "retry": header.retry.model_dump()}


def _same_estate(headers: list[tuple[str, DesiredState]]) -> list[Problem]:
    """The files of one desired state name one estate."""
    if not headers:
        return []
    first_file, first = headers[0]
    name = first.metadata.name
    return [
        Problem(
            file=filename,
            field="metadata.name",
            message=f"is {named(header.metadata.name)}, but {first_file} names the estate {named(name)}: "
            "give every file of the folder the same metadata.name",
        )
        for filename, header in headers[1:]
        if header.metadata.name != name
    ]


def select(desired: DesiredState, targets: Sequence[str]) -> DesiredState:
    """Only the resources `targets` name (`kind/name`) and what they run after, transitively (their
    `depends_on` and `on_change`), as Terraform's -target; none named: all of them.

    A target that names no resource is bad input, with the near matches.
    """
    if not targets:
        return desired
    by_ref = {res.ref: res for res in desired.resources}
    unknown = [target for target in targets if target not in by_ref]
    if unknown:
        known = list(by_ref)
        hints = []
        for target in unknown:
            close = difflib.get_close_matches(target, known, n=3)
            hint = f"did you mean {', '.join(named(c) for c in close)}?" if close else "no resource is close"
            hints.append(f"{named(target)} names no resource of the desired state ({hint})")
        raise BadInput("--limit: " + "; ".join(hints) + ": name resources as kind/name")
    wanted: set[str] = set()
    pending = list(targets)
    while pending:
        ref = pending.pop()
        if ref not in wanted:
            wanted.add(ref)
            pending += by_ref[ref].after
    return desired.model_copy(update={"resources": [r for r in desired.resources if r.ref in wanted]})


def _dotted(loc: Loc) -> str:
    """Format a key path the way problems show it: `resources[2].spec.path`."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


# Reading and parsing.


def _load(
    text: str, filename: str, registry: Registry, limits: Limits, overrides: Mapping[str, Any]
) -> DesiredState:
    document = _parse(text, filename, limits)
    out = _Problems(filename, document.lines)
    for repeated in document.repeated:
        message = (
            f"key {named(repeated.key)} appears twice in one mapping (first at line {repeated.first_line}), "
            "and YAML keeps only the last: remove one"
        )
        out.add_at(repeated.position, "", message)
    for loc in document.binary:
        out.add(loc, "is binary data (!!binary), which no field takes: write the value as text")
    state = _check_document(document.value, out, registry, limits, overrides)
    if out.found or state is None:
        raise SpecError(out.sorted())
    return state


def _decode(data: bytes | str, filename: str, limits: Limits) -> str:
    if isinstance(data, str):
        try:
            size = len(data.encode("utf-8"))
        except UnicodeEncodeError as exc:  # only text sent to the API can hold one: a file is decoded
            line = data.count("\n", 0, exc.start) + 1
            message = (
                f"the text holds a lone surrogate (U+{ord(data[exc.start]):04X}), which is not valid "
                "Unicode: send it as UTF-8 text"
            )
            raise SpecError([Problem(file=filename, line=line, message=message)]) from None
        if size > limits.max_bytes:
            raise SpecError([Problem(file=filename, message=too_many_bytes(limits.max_bytes))])
        return data
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        message = (
            f"the file is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}): "
            "save it as UTF-8"
        )
        raise SpecError([Problem(file=filename, line=line, message=message)]) from None


def _parse(text: str, filename: str, limits: Limits) -> yamldoc.Document:
    """The document's value and where its parts are, or a SpecError saying why there is none."""
    try:
        document = yamldoc.read(text, limits=limits)
    except yaml.YAMLError as exc:
        raise SpecError([_yaml_problem(exc, text, filename, limits)]) from None
    except TooLarge as exc:
        raise SpecError([Problem(file=filename, line=exc.line, message=str(exc))]) from None
    except RecursionError:  # only under limits widened past what Python's stack holds
        message = "the YAML is nested too deeply: flatten it"
        raise SpecError([Problem(file=filename, message=message)]) from None
    if document is None:
        message = "the file is empty: write a DesiredState document (docs/file-format.md describes one)"
        raise SpecError([Problem(file=filename, line=1, message=message)])
    return document


def _yaml_problem(exc: yaml.YAMLError, text: str, filename: str, limits: Limits) -> Problem:
    line: int | None = None
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        line = None if mark is None else mark.line + 1
        reason = " ".join(part for part in (exc.context, exc.problem) if part) or str(exc)
    elif isinstance(exc, yaml.reader.ReaderError):
        line = text.count("\n", 0, exc.position) + 1
        code = exc.character if isinstance(exc.character, int) else ord(exc.character[:1] or "\0")
        reason = f"character U+{code:04X} is not allowed in YAML"
    else:
        reason = str(exc)
    if "maximum nesting depth" in reason:  # libyaml's own limit, when its scanner meets it first
        return Problem(file=filename, line=line, message=too_deep(limits.max_depth))
    return Problem(file=filename, line=line, message=f"invalid YAML: {reason}: fix the syntax")


class _At(NamedTuple):
    """Where a problem was placed directly, as opposed to a key path whose line is found at the end."""

    position: Position | None


class _Part(NamedTuple):
    """One file of a desired state read from several: its name, its lines, and its first resource's index."""

    filename: str
    lines: yamldoc.Lines
    start: int


class _Problems:
    """Collects problems; fills in the file name, and the line of each field once all are known.

    Over several files (`parts`), a key path `resources[N]...` names the N-th resource of them all: it is
    reported in the file that holds it, under its index there.
    """

    def __init__(self, filename: str, lines: yamldoc.Lines, parts: list[_Part] | None = None) -> None:
        self.parts = parts or [_Part(filename, lines, 0)]
        self.filename = self.parts[0].filename
        self._starts = [part.start for part in self.parts]
        self._found: list[tuple[int, Loc | _At, str, str]] = []  # part, where, field, message

    @property
    def found(self) -> bool:
        return bool(self._found)

    @property
    def where_refs(self) -> str:
        """Where a reference must name a resource, in the words of a problem."""
        return "this file" if len(self.parts) == 1 else "these files"

    def local(self, loc: Loc) -> tuple[int, Loc]:
        """The part holding `loc`, and `loc` within that part's file."""
        if len(self.parts) == 1 or len(loc) < 2 or loc[0] != "resources" or not isinstance(loc[1], int):
            return 0, loc
        part = bisect.bisect_right(self._starts, loc[1]) - 1
        return part, ("resources", loc[1] - self.parts[part].start, *loc[2:])

    def place(self, index: int) -> tuple[str, str]:
        """Where the resource of this index is, `file:line`, and its field, `resources[N]` in that file."""
        part, loc = self.local(("resources", index))
        return f"{self.parts[part].filename}:{self.parts[part].lines.line(loc)}", _dotted(loc)

    def add(self, loc: Loc, message: str, at: Loc | None = None) -> None:
        """Add a problem with field `loc`, at the line of `loc` (or of `at` when given)."""
        part, local = self.local(loc)
        where = local if at is None else self.local(at)[1]
        self._found.append((part, where, _dotted(local), message))

    def add_at(self, position: Position | None, field: str, message: str) -> None:
        """Add a problem at a 0-based (line, column) of the (first) file."""
        self._found.append((0, _At(position), field, message))

    def add_validation(self, prefix: Loc, error: ValidationError, model: type[BaseModel]) -> None:
        """Add each error pydantic found, its location taken relative to `prefix`."""
        for detail in error.errors():
            loc = prefix + tuple(detail["loc"])
            self.add(loc, _validation_message(detail, loc, model, len(detail["loc"]) == 1))

    def sorted(self) -> list[Problem]:
        """The problems in the order of their place in the files."""
        placed: list[tuple[int, Position | None, str, str]] = []
        for number, part in enumerate(self.parts):
            mine = [(where, field, message) for at, where, field, message in self._found if at == number]
            part.lines.load(where for where, _, _ in mine if not isinstance(where, _At))
            for where, field, text in mine:
                position = where.position if isinstance(where, _At) else part.lines.position(where)
                placed.append((number, position, field, text))
        placed.sort(key=lambda problem: (problem[0], problem[1] or (-1, -1)))
        return [
            Problem(
                file=self.parts[number].filename,
                line=None if at is None else at.line + 1,
                field=field,
                message=message,
            )
            for number, at, field, message in placed
        ]


def _validation_message(detail: Any, loc: Loc, model: type[BaseModel], top: bool) -> str:
    kind = detail["type"]
    if kind == "missing":
        return f"is required but missing: {_MISSING_HINTS.get(_dotted(loc), 'add it')}"
    if kind == "extra_forbidden":
        known = _field_names(model) if top else []
        return f"unknown key: {_suggest(str(loc[-1]), known, 'remove it or fix its spelling')}"
    message = str(detail["msg"]).replace("a valid dictionary", "a mapping")  # the file's word
    if kind == "literal_error":  # pydantic quotes the allowed values as Python does
        message = message.replace("'", "")
    if kind == "value_error":  # a check of ours: it names the value and says what to write itself
        return message.removeprefix("Value error, ")
    return f"{message[:1].lower()}{message[1:]}, got {shown(detail['input'])}: fix the value"


def _field_names(model: type[BaseModel]) -> list[str]:
    return [field.alias or name for name, field in model.model_fields.items()]


def _suggest(word: str, known: list[str], otherwise: str, label: str = "allowed") -> str:
    close = difflib.get_close_matches(word, known, n=1)
    hint = f"did you mean {named(close[0])}?" if close else otherwise
    return f"{hint} ({label}: {', '.join(known)})" if known else hint


# Checking the document.


def _check_document(
    document: Any, out: _Problems, registry: Registry, limits: Limits, overrides: Mapping[str, Any]
) -> DesiredState | None:
    if not isinstance(document, dict):
        got = "nothing" if document is None else _TYPE_WORDS.get(type(document), shown(document))
        out.add((), f"the top level must be a mapping of apiVersion, kind, metadata and resources, got {got}")
        return None
    header = _check_header(document, out)
    items = _resource_items(document, out, limits)
    variables = {**(header.vars if header is not None else {}), **overrides}
    items = None if items is None else _rendered(items, variables, out)
    resources = None if items is None else _check_resources(items, out, registry)
    if header is None or resources is None:
        return None
    return header.model_copy(update={"resources": resources})


def _rendered(items: list[Any], variables: Mapping[str, Any], out: _Problems) -> list[Any]:
    """The resource items with the templates of their `spec` rendered with `vars` (workflows.templates)."""
    return [
        {
            **item,
            "spec": templates.render_vars(item["spec"], variables, ("resources", index, "spec"), out.add),
        }
        if isinstance(item, dict) and isinstance(item.get("spec"), dict)
        else item
        for index, item in enumerate(items)
    ]


def _check_header(document: dict[Any, Any], out: _Problems) -> DesiredState | None:
    try:
        # The resources are checked one by one, so that one bad resource does not hide the others.
        return DesiredState.model_validate({**document, "resources": []})
    except ValidationError as exc:
        out.add_validation((), exc, DesiredState)
        return None


def _resource_items(document: dict[Any, Any], out: _Problems, limits: Limits) -> list[Any] | None:
    if "resources" not in document:
        out.add(("resources",), "is missing: add `resources:` with a list of resources (`[]` for none)")
        return None
    items = document["resources"]
    if not isinstance(items, list):
        got = shown(items)
        out.add(("resources",), f"must be a list of resources, got {got}: write one `- kind: ...` per item")
        return None
    if len(items) > limits.max_resources:  # read whole: given through an alias, or beside a merge key
        out.add(("resources",), too_many_resources(limits.max_resources))
        return None
    return items


def _check_resources(items: list[Any], out: _Problems, registry: Registry) -> list[Resource]:
    refs = _index_refs(items, out)
    graph: dict[str, list[tuple[Loc, str]]] = {}
    resources: list[Resource] = []
    owners: list[tuple[int, Resource]] = []
    for index, item in enumerate(items):
        loc: Loc = ("resources", index)
        if not isinstance(item, dict):
            out.add(loc, f"must be a mapping with kind, name and spec, got {shown(item)}")
            continue
        resource = _check_resource(loc, item, out, registry)
        if resource is not None:
            owners.append((index, resource))
        edges = _check_refs(loc, "depends_on", item, refs, out) + _check_refs(
            loc, "on_change", item, refs, out
        )
        ref = _ref_of(item)
        if ref is not None and refs[ref] == index:
            graph[ref] = edges
        if resource is not None:
            resources.append(resource)
    _check_cycles(graph, refs, out)
    _check_conflicts(owners, out, registry)
    return resources


def _scopes_overlap(first: str | None, second: str | None) -> bool:
    """Whether two scopes of one role can put a step on the same agent.

    No scope (the role's active agent) and `each` (every live agent) can reach any agent of the role;
    two agent ids overlap only when they are the same agent.
    """
    return first in (None, EACH) or second in (None, EACH) or first == second


def _check_conflicts(owners: list[tuple[int, Resource]], out: _Problems, registry: Registry) -> None:
    """Report two resources that manage the same thing (Provider.identity) and can land on one host.

    They can when they have the same role and overlapping scopes. Different roles are taken as different
    hosts: the file cannot know which agents will take which roles.
    """
    seen: dict[str, list[tuple[int, Resource]]] = {}
    for index, resource in owners:
        provider = registry.get(resource.kind)
        if provider is None:
            continue
        try:
            identity = provider.identity(provider.parse(resource.spec))
        except ValidationError:
            continue
        if identity is None:
            continue
        for other_index, other in seen.get(identity, []):
            if other.role == resource.role and _scopes_overlap(other.scope, resource.scope):
                where, field = out.place(other_index)
                thing = identity.replace(":", " ", 1)
                out.add(
                    ("resources", index),
                    f"conflict: {resource.ref} and {other.ref} ({where}, {field}) both "
                    f"manage {thing} on role {resource.role}: keep one, or give them different roles or "
                    "agents (scope)",
                )
                break
        seen.setdefault(identity, []).append((index, resource))


def _check_resource(loc: Loc, item: dict[Any, Any], out: _Problems, registry: Registry) -> Resource | None:
    kind = item.get("kind")
    provider = registry.get(kind) if isinstance(kind, str) else None
    if isinstance(kind, str) and provider is None:
        known = registry.kinds()
        out.add(
            (*loc, "kind"),
            f"unknown kind {named(kind)}: {_suggest(kind, known, 'use a known kind', 'known kinds')}",
        )
    spec = item.get("spec", {})
    if provider is not None and isinstance(spec, dict):
        listed = item.get("credentials", [])
        context = {LISTED_CREDENTIALS: listed} if isinstance(listed, list) else None
        try:
            provider.spec_model.model_validate(spec, context=context)
        except ValidationError as exc:
            out.add_validation((*loc, "spec"), exc, provider.spec_model)
    default_role = None if provider is None else provider.default_role
    _check_names(loc, item, kind if provider is not None else None, default_role, out)
    try:
        resource = Resource.model_validate(item)
    except ValidationError as exc:
        out.add_validation(loc, exc, Resource)
        return None
    if resource.role is None and default_role is not None:
        resource = resource.model_copy(update={"role": default_role})
    return resource


def _check_names(
    loc: Loc, item: dict[Any, Any], kind: str | None, default_role: str | None, out: _Problems
) -> None:
    role, scope = item.get("role"), item.get("scope")
    if role is None and kind is not None and default_role is None:
        message = (
            f"is missing: kind {kind} has no default role; add `role: <role>` naming the agents to run it"
        )
        out.add((*loc, "role"), message, at=loc)
    for key, value in (("role", role), ("scope", scope)):
        if isinstance(value, str) and not valid_name(value):
            hint = f", or `{EACH}` for every live agent of the role" if key == "scope" else ""
            out.add(
                (*loc, key),
                f"{shown(value)} is not a valid name (it becomes a queue name): use 1 to 63 letters, digits, "
                f"'_', '.' or '-', starting with a letter or digit{hint}",
            )


def _ref_of(item: dict[Any, Any]) -> str | None:
    kind, name = item.get("kind"), item.get("name")
    return f"{kind}/{name}" if isinstance(kind, str) and isinstance(name, str) else None


def _index_refs(items: list[Any], out: _Problems) -> dict[str, int]:
    """Map each `kind/name` to the index of its first definition, reporting later definitions."""
    refs: dict[str, int] = {}
    for index, item in enumerate(items):
        ref = _ref_of(item) if isinstance(item, dict) else None
        if ref is None:
            continue
        first = refs.setdefault(ref, index)
        if first != index:
            where, field = out.place(first)
            if len(out.parts) == 1:
                where = f"line {where.rpartition(':')[2]}"
            out.add(
                ("resources", index),
                f"duplicate resource {ref}: already defined at {where} ({field}); "
                "give each resource of a kind a unique name",
            )
    return refs


def _check_refs(
    loc: Loc, key: str, item: dict[Any, Any], refs: dict[str, int], out: _Problems
) -> list[tuple[Loc, str]]:
    """Report bad `depends_on` (or `on_change`) entries; return the good ones as (key path, ref) edges,
    each ref once."""
    entries = item.get(key)
    if not isinstance(entries, list):
        return []
    edges: list[tuple[Loc, str]] = []
    seen: set[str] = set()
    for position, entry in enumerate(entries):
        if not isinstance(entry, str) or entry in seen:
            continue
        seen.add(entry)
        kind, slash, name = entry.partition("/")
        if not (kind and slash and name):
            message = f"{named(entry)} is not a resource reference: write it as kind/name, e.g. file/index"
            out.add((*loc, key, position), message)
        elif entry not in refs:
            message = f"{named(entry)} does not exist in {out.where_refs}: define it, or fix the kind/name"
            out.add((*loc, key, position), message)
        elif key == "on_change" and entry == _ref_of(item):
            out.add((*loc, key, position), f"{named(entry)} is this resource: name another one")
        else:
            edges.append(((key, position), entry))
    return edges


def _check_cycles(graph: dict[str, list[tuple[Loc, str]]], refs: dict[str, int], out: _Problems) -> None:
    """Report each dependency cycle once, at the `depends_on` (or `on_change`) entry that closes it."""
    for ref, position, cycle in _find_cycles(graph):
        loc: Loc = ("resources", refs[ref], *position)
        out.add(loc, f"dependency cycle {cycle}: remove one of these dependencies")


def _find_cycles(graph: dict[str, list[tuple[Loc, str]]]) -> Iterator[tuple[str, Loc, str]]:
    """Iterative depth-first search: each back edge closes one cycle, yielded as (ref, position, text)."""
    done: set[str] = set()
    for start in graph:
        if start in done:
            continue
        path: list[str] = [start]
        on_path: dict[str, int] = {start: 0}
        pending: list[Iterator[tuple[Loc, str]]] = [iter(graph[start])]
        while pending:
            step = next(pending[-1], None)
            if step is None:
                finished = path.pop()
                del on_path[finished]
                done.add(finished)
                pending.pop()
                continue
            position, target = step
            if target in on_path:
                yield path[-1], position, _cycle_text(path, on_path[target], target)
            elif target not in done:
                on_path[target] = len(path)
                path.append(target)
                pending.append(iter(graph.get(target, [])))


def _cycle_text(path: list[str], start: int, target: str) -> str:
    cycle = path[start:] if len(path) - start <= _LONGEST_CYCLE_SHOWN else None
    if cycle is None:
        hidden = len(path) - start - _LONGEST_CYCLE_SHOWN
        cycle = [*path[start : start + 6], f"({hidden} more)", *path[-6:]]
    return " -> ".join([*cycle, target])
