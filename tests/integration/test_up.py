"""`converge up --once`: the quick start, on this machine, with nothing but the project installed.

The quick start writes under /tmp/converge-quickstart, where a user may be looking: the test runs the same
file with that folder moved under its own tmp_path.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from engine.up import QUICKSTART

QUICKSTART_ROOT = "/tmp/converge-quickstart"


def quickstart_under(tmp_path: Path) -> tuple[Path, Path]:
    """The quick start's file, writing under tmp_path instead of QUICKSTART_ROOT; and that folder."""
    root = tmp_path / "quickstart"
    text = QUICKSTART.read_text(encoding="utf-8")
    assert QUICKSTART_ROOT in text
    desired = tmp_path / "quickstart.yaml"
    desired.write_text(text.replace(QUICKSTART_ROOT, str(root)), encoding="utf-8")
    return desired, root


def up_once(home: Path, desired: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVERGE_")}
    return subprocess.run(
        [sys.executable, "-m", "engine", "up", "--once", str(desired), "--home", str(home)],
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

    second = up_once(home, desired)

    assert second.returncode == 0, second.stderr[-3000:]
    assert not any(last_run(home).values())
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
