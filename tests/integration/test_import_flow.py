"""Machines imported end to end, with no operator command once the source and catalog are set: a real
OpenLDAP server (or an inventory folder) lists a machine, the engine's own agent runs its import workflow,
validates the pending agent of that host against the catalog and admits it, and the agent converges.

One engine (HTTPS, its own agent, the relaxing extension of examples/extensions in that agent's folder)
serves every test of the module; each test uses machines of its own.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from common.localredis import LocalRedis
from common.store import open_store
from tests.integration.conftest import Cluster, desired_state, wait_for
from tests.integration.test_imports_ldap import PASSWORD, ROOT_DN, SUFFIX, Directory, _admin
from tests.integration.test_imports_ldap import directory as directory  # the module's slapd

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CATALOG = "desktops"
DOCUMENT: dict[str, Any] = {
    "os": {"ID": "debian", "VERSION_ID": "12"},
    "applications": {"libreoffice": "4:7.4.7-1", "firefox-esr": "115.9.1esr-1"},
    "updates": ["debian-12.5"],
    "associations": {".odt": "application/vnd.oasis.opendocument.text"},
}
IMPORTED_S = 120  # an import is a poll (1 s), a workflow and an admission; the deadline is for a slow machine


@pytest.fixture(scope="module")
def engine(
    redis_server: LocalRedis, directory: Directory, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    work = tmp_path_factory.mktemp("imports")
    cluster = Cluster(redis_server.url, work, f"sqlite:///{work / 'converge.db'}", tls=True)
    cluster.init_engine()
    extensions = Path(cluster.env["CONVERGE_HOME"]) / "local-agent" / "extensions"
    extensions.mkdir(parents=True)
    shutil.copy(REPO / "examples" / "extensions" / "relax_capabilities.py", extensions)
    (extensions / "relax_capabilities.py").chmod(0o644)
    cluster.start_engine(CONVERGE_LOCAL_AGENT="true")
    try:
        wait_for(lambda: _engine_agent(cluster) == "active", 90, "the engine's own agent to be active")
        stored = cluster.cli("credentials", "set", "ldap-bind", stdin=PASSWORD)
        assert stored.returncode == 0, stored.stderr
        expected = json.dumps(DOCUMENT)
        spec = f"{{roles: [desktop], expected: '{expected}'}}"
        catalog = f"  - {{kind: catalog, name: {CATALOG}, spec: {spec}}}\n"
        done = cluster.apply(cluster.write("catalog.yaml", desired_state("catalogs", catalog)))
        assert done["workflow"]["state"] == "succeeded", done
        yield cluster
    finally:
        cluster.stop_all()
        cluster.redis.close()


def _engine_agent(cluster: Cluster) -> str | None:
    listed = cluster.cli("agents", "list", "--json")
    if listed.returncode != 0:
        return None
    return next((a["state"] for a in json.loads(listed.stdout) if a["id"].startswith("engine-")), None)


def _cli_json(cluster: Cluster, *args: str) -> Any:
    result = cluster.cli(*args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def machine(cluster: Cluster, name: str) -> dict[str, Any]:
    return next((m for m in _cli_json(cluster, "machines", "list") if m["name"] == name), {})


def agent(cluster: Cluster, agent_id: str) -> dict[str, Any]:
    return next((a for a in _cli_json(cluster, "agents", "list") if a["id"] == agent_id), {})


def live(cluster: Cluster, agent_id: str) -> bool:
    """Admitted and heartbeating: `active` if it leads its role, `backup` behind ws-ok's agent, which
    leads role desktop from the first test on."""
    return agent(cluster, agent_id).get("state") in ("active", "backup")


def import_workflows(cluster: Cluster) -> set[str]:
    """The ids of every import workflow the store holds, finished ones too."""
    store = open_store(cluster.env["CONVERGE_STORE_URL"], migrate=False)
    try:
        views = store.workflows() + store.workflows(history=True)
    finally:
        store.close()
    return {w.id for w in views if w.name.startswith("import-")}


def start_pending(cluster: Cluster, host: str, document: dict[str, Any]) -> subprocess.Popen[bytes]:
    """The agent of `host` as an operator starts it on a new machine: the engine's address and CA, its
    capability document, no token; it enrolls and waits."""
    doc = cluster.write(f"{host}.json", json.dumps(document))
    shared = cluster.env
    cluster.env = {
        k: v for k, v in shared.items() if k not in ("CONVERGE_AGENT_ENGINE_KEY", "CONVERGE_TOKEN")
    }
    cluster.env |= {
        "CONVERGE_AGENT_ENGINE_URL": shared["CONVERGE_URL"],
        "CONVERGE_AGENT_ENGINE_CA": shared["CONVERGE_CA"],
        "CONVERGE_AGENT_HOST_NAME": host,
        "CONVERGE_AGENT_CAPABILITIES_FILE": str(doc),
    }
    try:
        argv = [sys.executable, "-m", "agents", "run", "--id", f"{host}-desktop", "--role", "desktop"]
        return cluster._spawn(f"agent-{host}", argv)
    finally:
        cluster.env = shared


def add_computer(directory: Directory, name: str) -> None:
    with _admin(directory.url) as conn:
        assert conn.add(f"cn={name},ou=import,{SUFFIX}", ["device"], {"cn": name}), conn.result


def test_the_catalog_is_stored_by_the_engines_own_agent_and_applying_it_again_changes_nothing(
    engine: Cluster,
) -> None:
    store = open_store(engine.env["CONVERGE_STORE_URL"], migrate=False)
    try:
        stored = store.catalog(CATALOG)
    finally:
        store.close()
    assert stored is not None and (stored.roles, stored.reference) == (["desktop"], None)
    assert json.loads(stored.expected or "") == DOCUMENT
    planned = engine.cli("plan", str(engine.workdir / "catalog.yaml"), "--detailed-exitcode")
    assert planned.returncode == 0, planned.stdout + planned.stderr  # 4 if the catalog would change


@pytest.fixture(scope="module")
def ldap_source(engine: Cluster, directory: Directory) -> str:
    added = engine.cli(
        "sources", "add", "corp", "--kind", "ldap", "--url", directory.url,
        "--base-dn", f"ou=import,{SUFFIX}", "--filter", "(objectClass=device)",
        "--bind-dn", ROOT_DN, "--bind-credential", "ldap-bind", "--catalog", CATALOG, "--every", "1s",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    return "corp"


def test_a_machine_added_to_the_import_ou_is_imported_and_its_agent_converges(
    engine: Cluster, directory: Directory, ldap_source: str, tmp_path: Path
) -> None:
    start_pending(engine, "ws-ok", DOCUMENT)
    add_computer(directory, "ws-ok")

    wait_for(lambda: machine(engine, "ws-ok").get("state") == "imported", IMPORTED_S, "ws-ok imported")
    assert machine(engine, "ws-ok") | {"differences": []} == machine(engine, "ws-ok")
    assert machine(engine, "ws-ok")["catalog"] == CATALOG
    wait_for(lambda: agent(engine, "ws-ok-desktop").get("state") == "active", 60, "ws-ok's agent active")
    target = tmp_path / "converged.txt"
    work = f"  - {{kind: file, name: f, role: desktop, spec: {{path: {target}, content: imported}}}}\n"
    done = engine.apply(engine.write("work.yaml", desired_state("desktop-work", work)))
    assert done["workflow"]["state"] == "succeeded", done
    assert target.read_text() == "imported"


def test_a_capability_difference_fails_the_import_and_a_retry_after_the_fix_imports_it(
    engine: Cluster, directory: Directory, ldap_source: str
) -> None:
    wrong = json.loads(json.dumps(DOCUMENT))
    wrong["applications"]["libreoffice"] = "4:7.0.4-4"
    pending = start_pending(engine, "ws-bad", wrong)
    add_computer(directory, "ws-bad")

    wait_for(
        lambda: machine(engine, "ws-bad").get("state") == "failed", IMPORTED_S, "ws-bad's import to fail"
    )
    failed = machine(engine, "ws-bad")
    assert failed["differences"] == ["application libreoffice is 4:7.0.4-4, expected 4:7.4.7-1"]
    assert agent(engine, "ws-bad-desktop")["admission"] == "pending"
    shown = engine.show(failed["workflow_id"])
    assert shown["state"] == "failed"
    assert "application libreoffice is 4:7.0.4-4, expected 4:7.4.7-1" in json.dumps(shown)

    # the operator fixes the machine; its agent, restarted, tells the engine its document again
    pending.terminate()
    pending.wait(timeout=30)
    engine.procs.pop("agent-ws-bad")
    start_pending(engine, "ws-bad", DOCUMENT)
    log = engine.logs / "agent-ws-bad.log"
    wait_for(lambda: log.read_text().count("enrolled with the engine") == 2, 60, "ws-bad to enroll again")
    retried = engine.cli("workflows", "retry", failed["workflow_id"])
    assert retried.returncode == 0, retried.stderr
    wait_for(lambda: machine(engine, "ws-bad").get("state") == "imported", IMPORTED_S, "ws-bad imported")
    assert machine(engine, "ws-bad")["differences"] == []
    wait_for(lambda: live(engine, "ws-bad-desktop"), 60, "ws-bad's agent admitted and live")


def test_the_relaxing_extension_imports_a_machine_that_differs_only_in_updates(
    engine: Cluster, directory: Directory, ldap_source: str
) -> None:
    newer = json.loads(json.dumps(DOCUMENT))
    newer["updates"] = ["debian-12.5", "debian-12.6"]
    start_pending(engine, "ws-newer", newer)
    add_computer(directory, "ws-newer")

    wait_for(lambda: machine(engine, "ws-newer").get("state") == "imported", IMPORTED_S, "ws-newer imported")
    assert agent(engine, "ws-newer-desktop")["admission"] == "admitted"


def test_a_machine_taken_out_of_the_import_ou_is_flagged_removed_not_deleted(
    engine: Cluster, directory: Directory, ldap_source: str
) -> None:
    """After the relaxing-extension test: ws-newer is imported; out of the OU it is flagged, and its agent
    keeps its admission (removing a computer object is not a revocation)."""
    wait_for(lambda: machine(engine, "ws-newer").get("state") == "imported", IMPORTED_S, "ws-newer imported")
    with _admin(directory.url) as conn:
        assert conn.delete(f"cn=ws-newer,ou=import,{SUFFIX}"), conn.result
    wait_for(lambda: machine(engine, "ws-newer").get("state") == "removed", 60, "ws-newer flagged removed")
    assert agent(engine, "ws-newer-desktop")["admission"] == "admitted"


def test_the_inventory_folder_source_imports_its_machines(engine: Cluster) -> None:
    folder = engine.workdir / "inventory"
    folder.mkdir()
    added = engine.cli(
        "sources", "add", "inventory", "--kind", "inventory", "--path", str(folder), "--every", "1s"
    )
    assert added.returncode == 0, added.stderr
    start_pending(engine, "ws-inv", DOCUMENT)
    (folder / "ws-inv.yaml").write_text(f"name: ws-inv\ncatalog: {CATALOG}\n")

    wait_for(lambda: machine(engine, "ws-inv").get("state") == "imported", IMPORTED_S, "ws-inv imported")
    assert machine(engine, "ws-inv")["source"] == "inventory"
    wait_for(lambda: live(engine, "ws-inv-desktop"), 60, "ws-inv's agent admitted and live")


def test_an_engine_restart_never_starts_a_second_import_of_a_machine(
    engine: Cluster, directory: Directory, ldap_source: str
) -> None:
    """Runs after the others: every machine they imported keeps its one import workflow."""
    before = {m["name"]: m["workflow_id"] for m in _cli_json(engine, "machines", "list")}
    imports = import_workflows(engine)
    engine.stop("engine")
    engine.start_engine(CONVERGE_LOCAL_AGENT="true")
    add_computer(directory, "ws-late")  # a poll after the restart that finds a new machine and the old ones
    wait_for(lambda: machine(engine, "ws-late").get("state") == "importing", IMPORTED_S, "ws-late seen")

    after = {m["name"]: m["workflow_id"] for m in _cli_json(engine, "machines", "list")}
    assert {k: v for k, v in after.items() if k != "ws-late"} == before
    assert import_workflows(engine) == imports | {after["ws-late"]}


def test_the_operator_commands_show_sources_machines_and_catalogs_and_refuse_mistakes(
    engine: Cluster, directory: Directory, ldap_source: str
) -> None:
    unknown = engine.cli(
        "sources", "add", "other", "--kind", "ldap", "--url", directory.url, "--base-dn", f"ou=import,{SUFFIX}",
        "--bind-dn", ROOT_DN, "--bind-credential", "nowhere", "--catalog", CATALOG,
    )  # fmt: skip
    assert unknown.returncode == 2, unknown.stdout + unknown.stderr
    assert "no credential 'nowhere' in the vault" in unknown.stderr
    assert "Traceback" not in unknown.stderr
    listed = _cli_json(engine, "sources", "list")
    assert "other" not in [s["name"] for s in listed]  # refused: nothing stored
    corp = next(s for s in listed if s["name"] == "corp")
    assert (corp["kind"], corp["every"], corp["error"]) == ("ldap", "1s", None)
    assert "nowhere" not in json.dumps(listed) and PASSWORD not in json.dumps(listed)

    shown = _cli_json(engine, "catalogs", "show", CATALOG)
    assert shown["roles"] == ["desktop"] and json.loads(shown["expected"]) == DOCUMENT
    assert [c["name"] for c in _cli_json(engine, "catalogs", "list")] == [CATALOG]
    missing = engine.cli("catalogs", "show", "laptops")
    assert missing.returncode != 0 and "no catalog named 'laptops'" in missing.stderr

    table = engine.cli("machines", "list")
    assert table.returncode == 0 and "corp" in table.stdout, table.stderr
    gone = engine.cli("sources", "remove", "nothing-here")
    assert gone.returncode != 0 and "no import source named 'nothing-here'" in gone.stderr
