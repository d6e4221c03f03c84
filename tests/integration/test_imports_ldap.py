"""The LDAP import source against a real OpenLDAP server: Debian's slapd, on a free port, with a throwaway
database and a generated slapd.conf in the test's temp folder, run as the test's own process."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import ldap3
import pytest

from common.store.imports import SourceRecord
from engine.imports.inventory import Listed
from engine.imports.ldap import list_ldap
from tests.integration.conftest import wait_for

SUFFIX = "dc=example,dc=test"
ROOT_DN = f"cn=admin,{SUFFIX}"
PASSWORD = "throwaway-secret"
SLAPD = "/usr/sbin/slapd"


@dataclass
class Directory:
    url: str


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def _admin(url: str) -> Iterator[ldap3.Connection]:
    """A connection bound as the directory's root; ldap3's own `with` leaves a bound connection open."""
    conn = ldap3.Connection(url, user=ROOT_DN, password=PASSWORD, auto_bind=True)
    try:
        yield conn
    finally:
        conn.unbind()


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def directory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Directory]:
    root = tmp_path_factory.mktemp("slapd")
    (root / "db").mkdir()
    conf = root / "slapd.conf"
    conf.write_text(
        "include /etc/ldap/schema/core.schema\n"
        "include /etc/ldap/schema/cosine.schema\n"
        "modulepath /usr/lib/ldap\n"
        "moduleload back_mdb\n"
        f"pidfile {root / 'slapd.pid'}\n"
        "database mdb\n"
        f"suffix {SUFFIX}\n"
        f"rootdn {ROOT_DN}\n"
        f"rootpw {PASSWORD}\n"
        f"directory {root / 'db'}\n"
        "maxsize 10485760\n"
    )
    port = _free_port()
    url = f"ldap://127.0.0.1:{port}"
    log = (root / "slapd.log").open("w")
    # -d 0: stays in the foreground as this test's child, so the test ends it by its own pid
    server = subprocess.Popen(
        [SLAPD, "-f", str(conf), "-h", url + "/", "-d", "0"],
        stdout=subprocess.DEVNULL,
        stderr=log,  # slapd's log, for a failed start
    )
    try:
        wait_for(lambda: server.poll() is not None or _listening(port), what="slapd to listen")
        assert server.poll() is None, (root / "slapd.log").read_text()
        with _admin(url) as conn:
            conn.add(SUFFIX, ["dcObject", "organization"], {"o": "example", "dc": "example"})
            for ou in ("import", "elsewhere"):
                conn.add(f"ou={ou},{SUFFIX}", ["organizationalUnit"], {"ou": ou})
        yield Directory(url)
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def _source(url: str, **config: object) -> SourceRecord:
    settings = {
        "url": url,
        "base_dns": [f"ou=import,{SUFFIX}"],
        "filter": "(objectClass=device)",
        "bind_dn": ROOT_DN,
        "bind_credential": "ldap-bind",
        "catalog": "web",
    } | config
    return SourceRecord("ou", "ldap", settings, 60.0, "admin", 0.0, next_at=0.0)


def test_the_computer_objects_of_the_import_ou_are_listed(directory: Directory) -> None:
    with _admin(directory.url) as conn:
        conn.add(f"cn=web1,ou=import,{SUFFIX}", ["device"], {"cn": "web1"})
        conn.add(f"cn=db1,ou=import,{SUFFIX}", ["device"], {"cn": "db1", "description": "db"})
        conn.add(f"cn=other1,ou=elsewhere,{SUFFIX}", ["device"], {"cn": "other1"})
    asked: list[str] = []

    def secret(name: str) -> str:
        asked.append(name)
        return PASSWORD

    listed = list_ldap(_source(directory.url), secret)
    assert sorted(listed, key=lambda m: m.name) == [Listed("db1", "web"), Listed("web1", "web")]
    assert asked == ["ldap-bind"]
    by_attribute = list_ldap(_source(directory.url, catalog_attribute="description"), secret)
    assert sorted(by_attribute, key=lambda m: m.name) == [Listed("db1", "db"), Listed("web1", "web")]


def test_a_wrong_bind_credential_says_which_server(directory: Directory) -> None:
    with pytest.raises(ValueError, match=directory.url):
        list_ldap(_source(directory.url), lambda name: "not-the-password")
