"""The LDAP import source: the computer objects under each import OU of a directory, Active Directory or
OpenLDAP alike (ldap3). A computer object is named by its `name_attribute` (default `cn`: AD's computer
objects and OpenLDAP's device entries both have it), and names its catalog by `catalog_attribute` when the
source sets one and the object has it, else the source's default `catalog`."""

from __future__ import annotations

from collections.abc import Callable

import ldap3
from ldap3.core.exceptions import LDAPException

from common.store.imports import SourceRecord
from engine.imports.inventory import Listed

DEFAULT_FILTER = "(objectClass=computer)"
TIMEOUT_S = 10
# The bind password, from the engine's vault by credential name.
Secret = Callable[[str], str]


def list_ldap(source: SourceRecord, secret: Secret) -> list[Listed]:
    """The computer objects of every base DN of the source; ValueError with what to fix if it cannot."""
    config = source.config
    name_attr = config.get("name_attribute") or "cn"
    catalog_attr = config.get("catalog_attribute")
    default_catalog = config.get("catalog")
    attributes = [name_attr] + ([catalog_attr] if catalog_attr else [])
    server = ldap3.Server(config["url"], connect_timeout=TIMEOUT_S, get_info=ldap3.NONE)
    bind_dn = config.get("bind_dn")
    password = secret(config["bind_credential"]) if config.get("bind_credential") else None
    found: dict[str, Listed] = {}
    conn = ldap3.Connection(
        server, user=bind_dn, password=password, receive_timeout=TIMEOUT_S, read_only=True
    )
    try:
        conn.open()
        if not conn.bind():  # a refused bind leaves the socket open: closed below
            raise ValueError(f"{config['url']}: the bind as {bind_dn!r} was refused: {conn.result}")
        for base in config["base_dns"]:
            entries = conn.extend.standard.paged_search(
                base,
                config.get("filter") or DEFAULT_FILTER,
                search_scope=ldap3.SUBTREE,
                attributes=attributes,
                paged_size=500,
                generator=True,
            )
            for entry in entries:
                if entry.get("type") != "searchResEntry":
                    continue
                listed = _listed(entry["attributes"], name_attr, catalog_attr, default_catalog)
                if listed is not None and listed.name not in found:
                    found[listed.name] = listed
    except LDAPException as exc:
        raise ValueError(f"{config['url']}: {type(exc).__name__}: {exc}") from None
    finally:
        conn.unbind()
    return list(found.values())


def _first(value: object) -> str | None:
    if isinstance(value, list):
        value = value[0] if value else None
    return value.strip() if isinstance(value, str) and value.strip() else None


def _listed(
    attributes: dict[str, object], name_attr: str, catalog_attr: str | None, default: str | None
) -> Listed | None:
    name = _first(attributes.get(name_attr))
    catalog = _first(attributes.get(catalog_attr)) if catalog_attr else None
    catalog = catalog or default
    if name is None or catalog is None:
        return None  # no host name, or no catalog and no default: not importable, not listed
    return Listed(name=name, catalog=catalog)
