"""Redis through Sentinel: the broker URL that names the sentinels, the master and the credentials.

The form is kombu's, every sentinel a `sentinel://` part, `;` between them:

    sentinel://[[USER]:PASSWORD@]HOST[:PORT];sentinel://HOST[:PORT][/DB]?master=NAME

The user and password (of any part: the first that has them) are those of the Redis data nodes, the
primary and its replicas; `sentinel_username` and `sentinel_password` in the query are those of the
sentinels themselves, when they have `requirepass`. The database and the query may sit on any part.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

SCHEME = "sentinel"
DEFAULT_PORT = 26379
FORM = "sentinel://[[USER]:PASSWORD@]HOST[:PORT];sentinel://HOST[:PORT][/DB]?master=NAME"
# The query parameters that are read; any other is refused, so that a misspelled one is not ignored.
QUERY_KEYS = ("master", "sentinel_username", "sentinel_password")


def is_sentinel(url: str) -> bool:
    return url.startswith(SCHEME + "://")


@dataclass(frozen=True)
class SentinelUrl:
    """A parsed sentinel broker URL (`parse`)."""

    sentinels: tuple[tuple[str, int], ...]
    master: str
    username: str | None = None
    password: str | None = None
    db: int = 0
    sentinel_username: str | None = None
    sentinel_password: str | None = None

    def sentinel_kwargs(self) -> dict[str, Any]:
        """What redis-py's `Sentinel(sentinel_kwargs=...)` needs to talk to the sentinels themselves."""
        kwargs: dict[str, Any] = {}
        if self.sentinel_username:
            kwargs["username"] = self.sentinel_username
        if self.sentinel_password:
            kwargs["password"] = self.sentinel_password
        return kwargs

    def with_credentials(self, username: str | None, password: str | None) -> SentinelUrl:
        """The same sentinels and master, with other credentials on the data nodes."""
        return replace(self, username=username, password=password)

    def celery_url(self) -> str:
        """One `sentinel://` part with the data nodes' credentials and the database, for Celery: the
        sentinels and the master go in the transport options (`transport_options`), since Celery reads
        `;` as failover alternatives."""
        host, port = self.sentinels[0]
        return f"{SCHEME}://{_userinfo(self.username, self.password)}{_host(host)}:{port}/{self.db}"

    def transport_options(self) -> dict[str, Any]:
        """kombu's sentinel transport options: the master, every sentinel and their own credentials."""
        options: dict[str, Any] = {"master_name": self.master, "sentinels": [list(s) for s in self.sentinels]}
        if self.sentinel_kwargs():
            options["sentinel_kwargs"] = self.sentinel_kwargs()
        return options

    def geturl(self) -> str:
        """The URL again, in the documented form (credentials on the first part, the rest on the last)."""
        parts = [f"{SCHEME}://{_host(host)}:{port}" for host, port in self.sentinels]
        parts[0] = f"{SCHEME}://{_userinfo(self.username, self.password)}{parts[0][len(SCHEME) + 3 :]}"
        query = {"master": self.master}
        if self.sentinel_username:
            query["sentinel_username"] = self.sentinel_username
        if self.sentinel_password:
            query["sentinel_password"] = self.sentinel_password
        return ";".join(parts) + f"/{self.db}?" + urlencode(query)


def parse(url: str) -> SentinelUrl:
    """The sentinels, master and credentials of `url`; ValueError saying what is wrong (no master, no host,
    a bad port or database). The message shows no password: callers put `redact(url)` before it."""
    sentinels: list[tuple[str, int]] = []
    username = password = None
    db = ""
    query: dict[str, str] = {}
    for number, part in enumerate(url.split(";"), start=1):
        parts = urlsplit(part)
        if parts.scheme != SCHEME:
            raise ValueError(f"part {number} is not a sentinel:// address: expected {FORM}")
        if not parts.hostname:
            raise ValueError(f"part {number} names no sentinel host: expected {FORM}")
        try:
            port = parts.port or DEFAULT_PORT
        except ValueError:
            raise ValueError(f"part {number}: the port must be a number from 1 to 65535") from None
        sentinels.append((parts.hostname, port))
        if parts.password is not None and password is None:
            username, password = unquote(parts.username or "") or None, unquote(parts.password)
        elif parts.username and username is None:
            username = unquote(parts.username)
        if parts.path.strip("/"):
            db = parts.path.strip("/")
        query.update(parse_qsl(parts.query))
    unknown = sorted(set(query) - set(QUERY_KEYS))
    if unknown:
        raise ValueError(f"unknown parameter {unknown[0]!r}: a sentinel URL takes {', '.join(QUERY_KEYS)}")
    if not query.get("master"):
        raise ValueError(f"names no master: add ?master=NAME (the name the sentinels monitor), as in {FORM}")
    if db and not db.isdigit():
        raise ValueError(f"the database {db!r} must be a number, as in {FORM}")
    return SentinelUrl(
        sentinels=tuple(sentinels),
        master=query["master"],
        username=username,
        password=password,
        db=int(db or 0),
        sentinel_username=query.get("sentinel_username") or None,
        sentinel_password=query.get("sentinel_password") or None,
    )


def redact(url: str) -> str:
    """`url` with the data nodes' and the sentinels' passwords as `***`, in every part."""
    parts = []
    for part in url.split(";"):
        scheme, sep, rest = part.partition("://")
        if "@" in rest.partition("/")[0].partition("?")[0]:
            userinfo, _, rest = rest.partition("@")
            user = userinfo.partition(":")[0] if ":" in userinfo else userinfo
            rest = f"{user}:***@{rest}" if ":" in userinfo else f"{user}@{rest}"
        parts.append(scheme + sep + _redact_query(rest))
    return ";".join(parts)


def _redact_query(rest: str) -> str:
    head, sep, query = rest.partition("?")
    if not sep:
        return rest
    pairs = [(k, "***" if "password" in k else v) for k, v in parse_qsl(query, keep_blank_values=True)]
    return head + sep + urlencode(pairs, safe="*")


def _userinfo(username: str | None, password: str | None) -> str:
    if password is None:
        return f"{quote(username, safe='')}@" if username else ""
    return f"{quote(username or '', safe='')}:{quote(password, safe='')}@"


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
