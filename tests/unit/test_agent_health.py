"""`converge-agent health`: the rules that say alive or ready from the health file, and the file itself."""

from __future__ import annotations

import json
import os
import socket
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from agents import healthfile
from agents.cli import main as agent_cli
from agents.config import AgentSettings, ConfigError
from agents.health import HEALTH_FILE, HealthRecord, judge

NOW = 1_800_000_000.0


def _record(age_s: float = 0.5, **fields: object) -> HealthRecord:
    values: dict[str, object] = {
        "agent_id": "web-01",
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "at": datetime.fromtimestamp(NOW - age_s, UTC),
        "heartbeat_interval_s": 1.0,
        "redis_ok": True,
        "admission": "trusted",
        "roles": ["web"],
        "leader_of": ["web"],
        "queues": ["converge.agent.web-01", "converge.role.web"],
    }
    return HealthRecord.model_validate(values | fields)


def test_a_fresh_file_of_a_live_agent_that_reaches_redis_is_alive_and_ready() -> None:
    assert judge(_record(), NOW, True, alive_only=True).ok
    ready = judge(_record(), NOW, True, alive_only=False)
    assert ready.ok
    assert "ready" in ready.reason and "leads web" in ready.reason


def test_a_file_older_than_three_heartbeat_intervals_is_neither_alive_nor_ready() -> None:
    for alive_only in (True, False):
        verdict = judge(_record(age_s=93), NOW, True, alive_only=alive_only)
        assert not verdict.ok
        assert "the agent's last heartbeat was 93 s ago" in verdict.reason
    assert judge(_record(age_s=2.9), NOW, True, alive_only=True).ok


def test_a_gone_process_is_not_alive_even_while_its_file_is_fresh() -> None:
    verdict = judge(_record(), NOW, False, alive_only=True)
    assert not verdict.ok
    assert "is not running" in verdict.reason and "converge-agent run" in verdict.reason


def test_a_file_from_another_host_is_judged_by_its_age_alone() -> None:
    assert judge(_record(), NOW, None, alive_only=False).ok
    assert not judge(_record(age_s=10), NOW, None, alive_only=False).ok


def test_an_agent_that_stopped_cleanly_says_so() -> None:
    verdict = judge(_record(stopped=True), NOW, True, alive_only=True)
    assert not verdict.ok
    assert "stopped at" in verdict.reason


def test_an_agent_cut_off_from_redis_is_alive_but_not_ready() -> None:
    record = _record(redis_ok=False, redis_error="ConnectionError: Connection refused")
    assert judge(record, NOW, True, alive_only=True).ok
    verdict = judge(record, NOW, True, alive_only=False)
    assert not verdict.ok
    assert "cannot reach Redis (ConnectionError: Connection refused)" in verdict.reason


def test_an_agent_turned_away_by_the_operator_is_alive_but_not_ready() -> None:
    record = _record(admission="turned away")
    assert judge(record, NOW, True, alive_only=True).ok
    verdict = judge(record, NOW, True, alive_only=False)
    assert not verdict.ok
    assert "converge agents admit web-01" in verdict.reason
    assert judge(_record(admission="admitted"), NOW, True, alive_only=False).ok


def test_the_file_is_written_whole_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "web-01" / HEALTH_FILE
    healthfile.write(path, _record())
    healthfile.write(path, _record(redis_ok=False))
    assert healthfile.read(path).redis_ok is False
    assert [p.name for p in path.parent.iterdir()] == [HEALTH_FILE]  # no temporary file left behind
    assert path.stat().st_mode & 0o777 == 0o644


def test_a_junk_file_is_bad_input_and_a_missing_one_is_no_agent(tmp_path: Path) -> None:
    path = tmp_path / HEALTH_FILE
    with pytest.raises(healthfile.NoHealthFile):
        healthfile.read(path)
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="not an agent health file"):
        healthfile.read(path)


def test_the_one_agent_of_the_state_folder_is_found_without_an_id(tmp_path: Path) -> None:
    settings = AgentSettings(state_dir=tmp_path, id="", roles=[])
    healthfile.write(tmp_path / "web-01" / HEALTH_FILE, _record())
    assert healthfile.locate(settings, id_given=False) == tmp_path / "web-01" / HEALTH_FILE
    healthfile.write(tmp_path / "db-01" / HEALTH_FILE, _record(agent_id="db-01"))
    with pytest.raises(ConfigError, match=r"several agents .*\(db-01, web-01\).*--id"):
        healthfile.locate(settings, id_given=False)
    named = AgentSettings(state_dir=tmp_path, id="db-01")
    assert healthfile.locate(named, id_given=True) == tmp_path / "db-01" / HEALTH_FILE


def test_a_pid_that_no_process_holds_is_not_alive() -> None:
    assert healthfile.pid_alive(_record()) is True
    assert healthfile.pid_alive(_record(pid=2**22 + 1)) is False  # above Linux's pid_max
    assert healthfile.pid_alive(_record(host="another-host")) is None


def test_the_writer_records_what_the_agent_knows_of_itself(tmp_path: Path) -> None:
    settings = AgentSettings(state_dir=tmp_path, id="web-01", roles=["web"], heartbeat_interval_s=0.5)
    writer = healthfile.HealthWriter(settings, "trusted", lambda: ["converge.agent.web-01"], lambda: [])
    writer.beat(False, "ConnectionError: refused")
    record = healthfile.read(settings.agent_dir / HEALTH_FILE)
    assert (record.agent_id, record.pid, record.redis_ok) == ("web-01", os.getpid(), False)
    assert record.heartbeat_interval_s == 0.5 and record.queues == ["converge.agent.web-01"]
    assert abs(record.at.timestamp() - time.time()) < 5


def test_health_without_any_agent_exits_3_with_one_line_that_says_to_start_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONVERGE_AGENT_CONFIG", str(tmp_path / "agent.toml"))
    monkeypatch.setenv("CONVERGE_AGENT_STATE_DIR", str(tmp_path / "state"))
    for name in ("CONVERGE_AGENT_ID", "CONVERGE_AGENT_ROLES"):
        monkeypatch.delenv(name, raising=False)
    result = CliRunner().invoke(agent_cli, ["health"])
    assert result.exit_code == 3
    assert (
        result.output.strip()
        == f"no agent has run in {tmp_path / 'state'}: start it with `converge-agent run`"
    )

    healthfile.write(tmp_path / "state" / "web-01" / HEALTH_FILE, _record(at=datetime.now(UTC)))
    alive = CliRunner().invoke(agent_cli, ["health", "--alive", "--json"])
    assert alive.exit_code == 0, alive.output
    document = json.loads(alive.output)
    assert document["ok"] is True and document["agent"]["agent_id"] == "web-01"
