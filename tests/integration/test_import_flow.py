"""Machines imported end to end, with no operator command once the source and catalog are set: a real
OpenLDAP server (or an inventory folder) lists a machine, the engine's own agent runs its import workflow,
validates the pending agent of that host against the catalog and admits it, and the agent converges.

One engine (HTTPS, its own agent, the relaxing extension of examples/extensions in that agent's folder)
serves every test of the module; each test uses machines of its own.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from common.localredis import LocalRedis
from common.store import open_store
from tests.integration.conftest import Cluster, desired_state, wait_for
from tests.integration.test_imports_ldap import PASSWORD, Directory
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
