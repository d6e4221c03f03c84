"""Templates in a desired state: any string of a resource's `spec` may be a Jinja2 template.

Rendered in Jinja2's sandbox with StrictUndefined, so that a template reaches no Python object and a name
it does not know is an error (naming it), never an empty string. A template sees `vars` (the file's
`vars:`, then `--vars-file`, then `--var`) and is rendered when the desired state is loaded, on the engine
and by the CLI alike; one that uses `facts` (what the agent gathered of its host) is left as written and
rendered by the agent that runs the step, so each agent of a fan-out renders its own. Secrets are never in
a template's context: the vault's values reach only a command's environment (`{credential: NAME}`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

from jinja2 import StrictUndefined, TemplateError, TemplateSyntaxError, UndefinedError, meta, nodes
from jinja2.nodes import Template as Parsed
from jinja2.sandbox import SandboxedEnvironment

FACTS = "facts"
_ENV = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)

Loc = tuple[str | int, ...]


class TemplateProblem(Exception):
    """A template that cannot be rendered: the message says which name or which syntax, and what to do."""


def is_template(text: str) -> bool:
    return "{{" in text or "{%" in text


@functools.lru_cache(maxsize=4096)
def _parse(text: str) -> Parsed:
    return _ENV.parse(text)


def clear_caches() -> None:
    """Forget the templates parsed and compiled so far (a benchmark's cold start)."""
    for cached in (_parse, _pieces, _compiled, names_in):
        cached.cache_clear()


# A template of literal text and `{{ root.name }}` lookups only: its pieces, text or (root, name).
Pieces = tuple[str | tuple[str, str], ...]


@functools.lru_cache(maxsize=4096)
def _pieces(text: str) -> Pieces | None:
    """The pieces of a simple template, rendered without compiling it (compiling costs three times what
    parsing does); None for any other template, which Jinja compiles and renders.

    A name that is also an attribute of a mapping (`vars.items`) is left to Jinja, which would give the
    attribute, as is anything starting with `_`, which the sandbox decides on.
    """
    pieces: list[str | tuple[str, str]] = []
    for node in _parse(text).body:
        if not isinstance(node, nodes.Output):
            return None
        for child in node.nodes:
            if isinstance(child, nodes.TemplateData):
                pieces.append(child.data)
            elif (
                isinstance(child, nodes.Getattr)
                and isinstance(child.node, nodes.Name)
                and not child.attr.startswith("_")
                and not hasattr(dict, child.attr)
            ):
                pieces.append((child.node.name, child.attr))
            else:
                return None
    return tuple(pieces)


def _render_pieces(pieces: Pieces, context: Mapping[str, Any], where: str) -> str | None:
    """A simple template rendered as Jinja renders it (str() of each value); None when a root is not a
    mapping, which Jinja then renders."""
    out: list[str] = []
    for piece in pieces:
        if isinstance(piece, str):
            out.append(piece)
            continue
        root, name = piece
        values = context[root]
        if not isinstance(values, dict):
            return None
        if name not in values:
            raise TemplateProblem(
                f"template: {root}.{name} is not defined {where}: define it, or fix the name"
            )
        out.append(str(values[name]))
    return "".join(out)


@functools.lru_cache(maxsize=4096)
def _compiled(text: str) -> Any:
    return _ENV.from_string(_parse(text))  # compiled from the tree parsed for its names


@functools.lru_cache(maxsize=4096)
def names_in(text: str) -> frozenset[str]:
    """The top-level names a template uses (`vars`, `facts`, or others, which no context has)."""
    try:
        pieces = _pieces(text)
        if pieces is not None:
            return frozenset(piece[0] for piece in pieces if isinstance(piece, tuple))
        return frozenset(meta.find_undeclared_variables(_parse(text)))
    except TemplateSyntaxError as exc:
        raise TemplateProblem(f"template syntax error: {exc.message}: fix the template") from None


def render(text: str, context: Mapping[str, Any], where: str, root: str = "vars") -> str:
    """Render one template with `context`; `where` says which context it had, for the error."""
    unknown = sorted(names_in(text) - set(context))
    if unknown:
        raise TemplateProblem(
            f"template uses {', '.join(unknown)}, which is not defined {where}: write vars.NAME for a "
            "variable, or facts.NAME for a fact of the agent's host"
        )
    pieces = _pieces(text)
    if pieces is not None:
        rendered = _render_pieces(pieces, context, where)
        if rendered is not None:
            return rendered
    try:
        return str(_compiled(text).render(context))
    except UndefinedError as exc:
        raise TemplateProblem(
            f"template: {_undefined(exc, root)} {where}: define it, or fix the name"
        ) from None
    except TemplateError as exc:
        raise TemplateProblem(f"template cannot be rendered: {exc}: fix the template") from None


def _undefined(exc: UndefinedError, root: str) -> str:
    """Jinja's "'dict object' has no attribute 'port'" as "variable vars.port is not defined"."""
    text = str(exc.message or exc)
    if "has no attribute" in text or "has no element" in text:
        return f"{root}.{text.rpartition(' ')[2].strip(chr(39))} is not defined"
    return text.replace("is undefined", "is not defined")


def render_vars(
    value: Any, variables: Mapping[str, Any], loc: Loc, report: Callable[[Loc, str], None]
) -> Any:
    """The value with each template rendered with `vars`, but those that use facts (left for the agent).

    Problems go to `report(loc, message)`; the value is then returned as it was at that place.
    """
    if isinstance(value, str):
        if not is_template(value):
            return value
        try:
            names = names_in(value)
            if FACTS in names:
                if names - {FACTS}:
                    raise TemplateProblem(
                        "a template that uses facts is rendered on the agent, which has the facts of its "
                        f"host but not {', '.join(sorted(names - {FACTS}))}: use facts only in it"
                    )
                return value
            return render(value, {"vars": variables}, "in vars (the file's vars:, --vars-file, --var)")
        except TemplateProblem as exc:
            report(loc, str(exc))
            return value
    if isinstance(value, dict):
        return {key: render_vars(item, variables, (*loc, key), report) for key, item in value.items()}
    if isinstance(value, list):
        return [render_vars(item, variables, (*loc, n), report) for n, item in enumerate(value)]
    return value


def render_facts(value: Any, facts: Mapping[str, Any]) -> Any:
    """On the agent: the value with each template rendered with the host's `facts`. TemplateProblem."""
    if isinstance(value, str):
        return render(value, {FACTS: facts}, "in this agent's facts", FACTS) if is_template(value) else value
    if isinstance(value, dict):
        return {key: render_facts(item, facts) for key, item in value.items()}
    if isinstance(value, list):
        return [render_facts(item, facts) for item in value]
    return value
