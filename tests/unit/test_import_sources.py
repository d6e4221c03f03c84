"""What an operator may configure as an import source: every mistake refused with what to write instead,
before anything is stored or sent; and a source changed only with an admin's token."""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner

from common.errors import BadInput
from engine.auth import Role, required_role
from engine.cli import main
from engine.imports.sources import SourceBody, source_record

LDAP: dict[str, Any] = {
    "kind": "ldap",
    "url": "ldaps://dc1.corp.example:636",
    "base_dns": ["ou=import,dc=corp,dc=example"],
    "bind_dn": "cn=converge,dc=corp,dc=example",
    "bind_credential": "ldap-bind",
    "catalog": "desktops",
    "every": "1m",
}


def test_an_ldap_source_keeps_what_the_operator_gave_and_is_polled_at_once() -> None:
    record = source_record("corp", SourceBody(**LDAP), "admin", 100.0)
    assert (record.kind, record.every_s, record.next_at, record.set_by) == ("ldap", 60.0, 100.0, "admin")
    assert record.config == {k: v for k, v in LDAP.items() if k not in ("kind", "every")}


def test_an_inventory_source_needs_an_absolute_folder() -> None:
    record = source_record("inv", SourceBody(kind="inventory", path="/srv/inventory"), "admin", 1.0)
    assert record.config == {"path": "/srv/inventory"}
    with pytest.raises(BadInput, match="needs --path DIR, the absolute path"):
        source_record("inv", SourceBody(kind="inventory", path="inventory"), "admin", 1.0)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"url": "http://dc1"}, "needs --url ldap://HOST"),
        ({"base_dns": [" "]}, "needs --base-dn DN"),
        ({"catalog": None}, "needs --catalog NAME"),
        ({"bind_credential": None}, "give --bind-dn and --bind-credential together"),
        ({"path": "/srv"}, "takes no --path"),
        ({"every": "often"}, "is not a duration"),
        ({"every": "0.1s"}, "must be between 1s"),
    ],
)
def test_each_mistake_in_an_ldap_source_says_what_to_write(change: dict[str, Any], message: str) -> None:
    with pytest.raises(BadInput, match=message):
        source_record("corp", SourceBody(**(LDAP | change)), "admin", 1.0)


@pytest.mark.parametrize("name", ["", "-x", "a/b", "x" * 65, "dc 1"])
def test_a_source_name_is_a_plain_word(name: str) -> None:
    with pytest.raises(BadInput, match="is not a source name"):
        source_record(name, SourceBody(**LDAP), "admin", 1.0)


def test_changing_a_source_needs_an_admin_and_reading_one_a_viewer() -> None:
    for method in ("PUT", "DELETE"):
        assert required_role(method, "/v1/sources/corp") == Role.ADMIN
    for path in ("/v1/sources", "/v1/machines", "/v1/catalogs", "/v1/catalogs/desktops"):
        assert required_role("GET", path) == Role.VIEWER


def test_the_cli_refuses_a_bad_interval_before_it_calls_any_engine() -> None:
    """No engine listens on the URL given: a call would be exit code 3, not the 2 of bad input."""
    result = CliRunner().invoke(
        main,
        ["sources", "add", "inv", "--kind", "inventory", "--path", "/srv", "--every", "often",
         "--engine-url", "http://127.0.0.1:9"],
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "--every 'often' is not a duration" in result.output


def test_an_unreachable_engine_is_named_by_the_option_of_the_command() -> None:
    """`sources add` takes the engine's address as --engine-url (its --url is the directory's)."""
    result = CliRunner().invoke(
        main,
        [
            "sources",
            "add",
            "inv",
            "--kind",
            "inventory",
            "--path",
            "/srv",
            "--engine-url",
            "http://127.0.0.1:9",
        ],
    )
    assert result.exit_code == 3, result.output
    assert "CONVERGE_URL / --engine-url" in result.output
