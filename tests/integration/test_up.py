"""`converge up --once`: the quick start, on this machine, with nothing but the project installed.

The quick start writes under /tmp/converge-quickstart, where a user may be looking: the test runs the same
file with that folder moved under its own tmp_path.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from engine.up import QUICKSTART
from tests.integration.conftest import wait_for

QUICKSTART_ROOT = "/tmp/converge-quickstart"


def quickstart_under(tmp_path: Path) -> tuple[Path, Path]:
    """The quick start's file, writing under tmp_path instead of QUICKSTART_ROOT; and that folder."""
    root = tmp_path / "quickstart"
    text = QUICKSTART.read_text(encoding="utf-8")
    assert QUICKSTART_ROOT in text
    desired = tmp_path / "quickstart.yaml"
    desired.write_text(text.replace(QUICKSTART_ROOT, str(root)), encoding="utf-8")
    return desired, root


def up_once(home: Path, desired: Path, *options: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVERGE_")}
    return subprocess.run(
        [sys.executable, "-m", "engine", "up", "--once", str(desired), "--home", str(home), *options],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def last_run(home: Path) -> dict[str, bool]:
    with sqlite3.connect(home / "converge.db") as conn:
        (workflow_id,) = conn.execute(
            "SELECT id FROM converge_workflows ORDER BY created_at DESC LIMIT 1"
        ).fetchone()
        rows = conn.execute(
            "SELECT resource, changed, state FROM converge_steps WHERE workflow_id = ?", (workflow_id,)
        ).fetchall()
    assert {state for _, _, state in rows} == {"succeeded"}
    return {resource: bool(changed) for resource, changed, _ in rows}


# Three whole `converge up --once` runs, each starting Redis, the engine and three agents: more than the
# suite's per-test limit on a loaded 2-core machine.
@pytest.mark.timeout(600)
def test_up_once_converges_the_quickstart_then_changes_only_what_was_edited(tmp_path: Path) -> None:
    home = tmp_path / "home"
    desired, root = quickstart_under(tmp_path)

    first = up_once(home, desired)

    assert first.returncode == 0, first.stderr[-3000:]
    assert "celery -A common.flower_app flower" in first.stdout
    # the commands it prints work as printed: the export line puts `converge` and `celery` on the PATH
    export = next(line for line in first.stdout.splitlines() if line.strip().startswith("export PATH="))
    scripts = Path(export.split('PATH="', 1)[1].split(":", 1)[0])
    assert (scripts / "converge").is_file() and (scripts / "celery").is_file(), export
    changed = last_run(home)
    assert changed.pop("wait_for/db-warm-up") is False
    assert all(changed.values()), changed
    # up admitted its own agents: each kept its own Redis user and API token, as an enrolled agent does
    kept = [json.loads(f.read_text()) for f in (home / "agents").glob("*/admission.json")]
    assert len(kept) == 3 and all(k["state"] == "admitted" and k["api_token"] for k in kept), kept
    assert all("converge-agent-" in k["broker_url"] for k in kept)
    index = root / "www" / "index.html"
    before = index.stat().st_mtime_ns

    assert "recap:" in first.stdout
    second = up_once(home, desired, "--json")

    assert second.returncode == 0, second.stderr[-3000:]
    assert not any(last_run(home).values())
    document = json.loads(second.stdout)
    steps = len(document["workflow"]["steps"])
    assert document["workflow"]["state"] == "succeeded"
    assert document["recap"]["total"] == dict.fromkeys(document["recap"]["total"], 0) | {"ok": steps}
    assert document["export"].startswith('export PATH="')
    assert f"CONVERGE_URL={document['url']} " in document["export"]
    assert index.stat().st_mtime_ns == before

    (root / "db" / "db.conf").write_text("max_connections = 5000\n")
    third = up_once(home, desired)

    assert third.returncode == 0, third.stderr[-3000:]
    assert [r for r, c in last_run(home).items() if c] == ["file/db-conf"]
    assert (root / "db" / "db.conf").read_text() == "max_connections = 50\n"
    assert (
        not list((home / "logs").glob("*.log"))
        or "Traceback" not in (home / "logs" / "engine.log").read_text()
    )


def test_the_commands_up_prints_work_as_printed_in_another_shell(tmp_path: Path) -> None:
    home = tmp_path / "home"
    desired, _ = quickstart_under(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVERGE_")}
    # Another shell: nothing of this one's PATH but the system's, so `converge` is found only as printed.
    shell_env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    out, err = tmp_path / "up.out", tmp_path / "up.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "engine", "up", str(desired), "--home", str(home)],
            env=env,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
        )
    try:
        wait_for(
            lambda: proc.poll() is not None or "converge is running" in err.read_text(),
            timeout_s=180,
            what="converge up to converge and keep running",
        )
        assert proc.poll() is None, err.read_text()[-3000:]
        printed = [line.strip() for line in out.read_text().splitlines()]
        start = printed.index(next(line for line in printed if line.startswith("export PATH=")))
        export, commands = printed[start], [line for line in printed[start + 1 :] if line]
        assert any(c.startswith("converge workflows show ") for c in commands), printed
        for command in (c for c in commands if c.startswith("converge ")):
            ran = subprocess.run(
                ["bash", "-c", f"{export}\n{command}"],
                env=shell_env,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert ran.returncode == 0, (command, ran.stdout, ran.stderr)
        flower = next(c for c in commands if "flower" in c)
        flower_log = tmp_path / "flower.log"
        with flower_log.open("wb") as log:
            served = subprocess.Popen(
                ["bash", "-c", f"{export}\n{flower}"],
                env=shell_env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            wait_for(
                lambda: served.poll() is not None or _answers("http://127.0.0.1:5555/"),
                timeout_s=60,
                what="Flower on its default port",
            )
            assert served.poll() is None, flower_log.read_text()[-3000:]
        finally:
            if served.poll() is None:
                os.killpg(served.pid, signal.SIGTERM)
            served.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=60) == 130


def _answers(url: str) -> bool:
    try:
        httpx.get(url, timeout=2)
    except httpx.HTTPError:
        return False
    return True
