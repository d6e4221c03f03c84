"""What an operator may configure as an import source (`converge sources add`), checked before it is
stored: pure, so the API and the tests share one set of rules. Each mistake is refused with what to write
instead; nothing half-checked reaches the monitor."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from common import durations, names
from common.errors import BadInput
from common.store.imports import SourceRecord

KINDS = ("ldap", "inventory")
DEFAULT_EVERY = "5m"
LDAP_SCHEMES = ("ldap://", "ldaps://")


class SourceBody(BaseModel):
    """The body of `PUT /v1/sources/NAME`: the kind, its settings, and the poll interval."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["ldap", "inventory"]
    every: str = Field(default=DEFAULT_EVERY, max_length=32)
    url: str | None = Field(default=None, max_length=1024)
    base_dns: list[str] = Field(default_factory=list, max_length=64)
    filter: str | None = Field(default=None, max_length=1024)
    bind_dn: str | None = Field(default=None, max_length=1024)
    bind_credential: str | None = Field(default=None, max_length=64)
    catalog: str | None = Field(default=None, max_length=255)
    catalog_attribute: str | None = Field(default=None, max_length=255)
    name_attribute: str | None = Field(default=None, max_length=255)
    path: str | None = Field(default=None, max_length=4096)


def check_name(name: str) -> str:
    if not names.PLAIN_NAME.fullmatch(name):
        raise BadInput(
            f"{name!r} is not a source name: up to 64 letters, digits, `.`, `_` or `-`, starting with a "
            "letter or digit"
        )
    return name


def source_record(name: str, body: SourceBody, by: str, now: float) -> SourceRecord:
    """The record to store, first polled at once; BadInput saying what to fix."""
    check_name(name)
    every_s = durations.parse(body.every, least_s=1.0, what="--every")
    config = _ldap(body) if body.kind == "ldap" else _inventory(body)
    return SourceRecord(name, body.kind, config, every_s, by, now, next_at=now)


def _unused(body: SourceBody, allowed: set[str]) -> None:
    given = body.model_dump(exclude_unset=True, exclude={"kind", "every"})
    stray = sorted(k for k, v in given.items() if v not in (None, []) and k not in allowed)
    if stray:
        options = ", ".join("--" + k.replace("_", "-").removesuffix("s") for k in stray)
        raise BadInput(f"a {body.kind} source takes no {options}: leave it out")


def _ldap(body: SourceBody) -> dict[str, Any]:
    _unused(
        body,
        {"url", "base_dns", "filter", "bind_dn", "bind_credential", "catalog", "catalog_attribute",
         "name_attribute"},
    )  # fmt: skip
    if not body.url or not body.url.startswith(LDAP_SCHEMES):
        raise BadInput(
            f"an ldap source needs --url ldap://HOST[:PORT] or ldaps://HOST[:PORT], not {body.url!r}"
        )
    base_dns = [dn.strip() for dn in body.base_dns if dn.strip()]
    if not base_dns:
        raise BadInput("an ldap source needs --base-dn DN, the import OU (repeat it for several OUs)")
    if not body.catalog and not body.catalog_attribute:
        raise BadInput(
            "an ldap source needs --catalog NAME (the catalog its machines join), or --catalog-attribute "
            "ATTR (the computer object's attribute that names it), or both"
        )
    if bool(body.bind_dn) != bool(body.bind_credential):
        raise BadInput(
            "give --bind-dn and --bind-credential together (the DN to bind as and the vault credential "
            "holding its password), or neither for an anonymous bind"
        )
    config: dict[str, Any] = {"url": body.url, "base_dns": base_dns}
    for key in ("filter", "bind_dn", "bind_credential", "catalog", "catalog_attribute", "name_attribute"):
        value = getattr(body, key)
        if value:
            config[key] = value
    return config


def _inventory(body: SourceBody) -> dict[str, Any]:
    _unused(body, {"path"})
    if not body.path or not body.path.startswith("/"):
        raise BadInput(
            f"an inventory source needs --path DIR, the absolute path of its folder on the engine's machine, "
            f"not {body.path!r}"
        )
    return {"path": body.path}


def view(record: SourceRecord) -> dict[str, Any]:
    """A source as `converge sources list` shows it: no secret in it, the bind credential is a name."""
    return {
        "name": record.name,
        "kind": record.kind,
        "every": durations.shown(record.every_s),
        "config": record.config,
        "set_by": record.set_by,
        "set_at": record.set_at,
        "polled_at": record.polled_at,
        "next_at": record.next_at,
        "error": record.error,
    }
