"""Which workflow an operator means: its id, or the start of one that no other id starts with.

Pure: the engine reads the candidates from the store (Store.workflow_ids) and this decides.
"""

from __future__ import annotations

from common.errors import BadInput, NotFound

# Fewer characters than this name a workflow only as its whole id: a prefix that short is mostly ambiguous.
MIN_PREFIX = 4
# How many candidates an ambiguous prefix lists; the engine reads one more to know that there are more.
SHOWN = 5


def not_found(given: str) -> NotFound:
    hint = f" (a prefix of an id needs at least {MIN_PREFIX} characters)" if len(given) < MIN_PREFIX else ""
    return NotFound(
        f"no workflow {given}{hint}: `converge workflows list` shows the active ones, "
        "`converge workflows history` the succeeded ones"
    )


def choose(given: str, found: list[str]) -> str:
    """The id `given` names among `found`, the ids that start with it (in order, at most SHOWN + 1).

    The whole id wins; else a prefix of at least MIN_PREFIX characters that only one id starts with. An
    ambiguous prefix is bad input that lists the candidates; no candidate is not found.
    """
    if given in found:
        return given
    if len(given) < MIN_PREFIX or not found:
        raise not_found(given)
    if len(found) == 1:
        return found[0]
    listed = ", ".join(found[:SHOWN]) + (", ..." if len(found) > SHOWN else "")
    raise BadInput(
        f"{given} is the start of more than one workflow id ({listed}): give more characters of the one "
        "you mean"
    )
