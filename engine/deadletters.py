"""The dead-letter stream: status entries the engine could not record, kept with the reason.

An entry lands here when it is malformed (not JSON, not a status event), or when the store refused it
MAX_FAILURES times while it took the other entries of its batch. Each dead letter keeps the entry's own
fields, so `retry` can put it back on the status stream as it was, plus the error, the time, the failure
count and its id in the status stream, under names that start with "_".
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import redis
from pydantic import BaseModel

from common import names
from common.errors import BadInput, NotFound

# The stream keeps the newest dead letters only: a flood of junk must not fill Redis's memory.
MAX_DEAD_LETTERS = 10_000
RAW_CHARS = 1000  # how much of a malformed entry a listing shows
ERROR_CHARS = 2000
_META = ("_error", "_at", "_failures", "_from")
_STREAM_ID = re.compile(r"^\d{1,20}-\d{1,20}$")

Fields = dict[bytes, bytes]


class DeadLetter(BaseModel):
    """One dead letter, as `converge dead-letters` shows it."""

    id: str  # in the dead-letter stream: what `retry` and `purge` take
    source_id: str | None  # the entry's id in the status stream
    at: datetime | None
    error: str
    failures: int
    event: dict[str, Any] | None = None  # the status event, when the entry held a JSON object
    raw: str | None = None  # otherwise the entry as text, cut at RAW_CHARS


def bury(pipe: Any, entry_id: bytes, fields: Fields, error: str, failures: int) -> None:
    """Queue on a pipeline the move of a status entry to the dead-letter stream, with its ack and delete."""
    dead: dict[bytes, bytes] = _original(fields)
    dead[b"_error"] = error[:ERROR_CHARS].encode()
    dead[b"_at"] = datetime.now(UTC).isoformat().encode()
    dead[b"_failures"] = str(failures).encode()
    dead[b"_from"] = entry_id
    pipe.xadd(names.DEAD_LETTER_STREAM, dead, maxlen=MAX_DEAD_LETTERS, approximate=True)
    pipe.xack(names.STATUS_STREAM, names.STATUS_GROUP, entry_id)
    pipe.xdel(names.STATUS_STREAM, entry_id)


def listing(client: redis.Redis, limit: int = 100) -> tuple[list[DeadLetter], int]:
    """The oldest `limit` dead letters, and how many there are in all."""
    pipe = client.pipeline(transaction=False)
    pipe.xrange(names.DEAD_LETTER_STREAM, count=limit)
    pipe.xlen(names.DEAD_LETTER_STREAM)
    entries, total = pipe.execute()
    return [_letter(entry_id, fields) for entry_id, fields in entries], int(total)


def retry(client: redis.Redis, ids: list[str]) -> list[str]:
    """Put dead letters back on the status stream as they were (all of them when `ids` is empty)."""
    found = _find(client, ids)
    pipe = client.pipeline()
    for _, fields in found:
        pipe.xadd(names.STATUS_STREAM, _original(fields) or {b"e": b""})  # type: ignore[arg-type]
    if found:
        pipe.xdel(names.DEAD_LETTER_STREAM, *[entry_id for entry_id, _ in found])
    pipe.execute()
    return [entry_id.decode() for entry_id, _ in found]


def purge(client: redis.Redis, ids: list[str]) -> int:
    """Delete dead letters for good (all of them when `ids` is empty); returns how many went."""
    if not ids:
        pipe = client.pipeline()
        pipe.xlen(names.DEAD_LETTER_STREAM)
        pipe.delete(names.DEAD_LETTER_STREAM)
        return int(pipe.execute()[0])
    found = _find(client, ids)
    return int(client.xdel(names.DEAD_LETTER_STREAM, *[entry_id for entry_id, _ in found]))


def check_ids(ids: list[str]) -> None:
    """Dead letters are named by their stream id (`1732530000000-0`); anything else is bad input."""
    bad = [i for i in ids if not _STREAM_ID.match(i)]
    if bad:
        raise BadInput(
            f"not a dead letter id: {', '.join(bad)}; ids look like 1732530000000-0, "
            "see `converge dead-letters`"
        )


def _find(client: redis.Redis, ids: list[str]) -> list[tuple[bytes, Fields]]:
    """The dead letters named (every one when `ids` is empty); NotFound names those that do not exist."""
    if not ids:
        return client.xrange(names.DEAD_LETTER_STREAM)  # type: ignore[return-value]
    check_ids(ids)
    pipe = client.pipeline(transaction=False)
    for entry_id in ids:
        pipe.xrange(names.DEAD_LETTER_STREAM, min=entry_id, max=entry_id)
    found = [entries[0] for entries in pipe.execute() if entries]
    missing = sorted(set(ids) - {entry_id.decode() for entry_id, _ in found})
    if missing:
        raise NotFound(f"no dead letter {', '.join(missing)}: `converge dead-letters` lists them")
    return found


def _original(fields: Fields) -> Fields:
    """The fields the entry had on the status stream."""
    return {k: v for k, v in fields.items() if k.decode(errors="replace") not in _META}


def _letter(entry_id: bytes, fields: Fields) -> DeadLetter:
    def text(key: str) -> str | None:
        value = fields.get(key.encode())
        return None if value is None else value.decode(errors="replace")

    at = text("_at")
    letter = DeadLetter(
        id=entry_id.decode(),
        source_id=text("_from"),
        at=datetime.fromisoformat(at) if at else None,
        error=text("_error") or "",
        failures=int(text("_failures") or 0),
    )
    original = _original(fields)
    # a status entry: the event, and the MAC it was signed with (not shown)
    body = original.get(b"e") if set(original) <= {b"e", b"s"} else None
    try:
        event = json.loads(body) if body is not None else None
    except ValueError:
        event = None
    if isinstance(event, dict):
        letter.event = event
    else:
        shown = body if body is not None else repr(original).encode()
        letter.raw = shown.decode(errors="replace")[:RAW_CHARS]
    return letter
