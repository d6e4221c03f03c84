"""A hostile desired state through the CLI: `converge apply` of a YAML alias bomb exits 2 at once, with a
message, small, and nothing reaches the engine."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from tests.integration.conftest import Cluster
from tests.unit.test_spec_limits import alias_bomb

# Loose, for a shared machine: the parser alone stops the bomb in milliseconds (tests/unit/test_spec_limits.py).
WALL_CLOCK_S = 5.0
# The whole CLI process, Python and its imports included; the bomb expanded would take gigabytes.
PEAK_RSS_MB = 200


# Runs the CLI as the child of a small fresh process and prints the CLI's peak RSS (KB) and exit code. Linux
# keeps a process's peak RSS across fork and exec, so a CLI started straight from this test's process would
# report the peak of pytest itself (hundreds of MB late in a full run).
MEASURE = (
    "import resource, subprocess, sys; "
    "done = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, done.returncode)"
)


def run_measured(cluster: Cluster, *args: str, workdir: Path) -> tuple[int, str, float, float]:
    """Run `converge ARGS`: its exit code, stderr, wall-clock seconds and peak RSS in MB (its own)."""
    err_path = workdir / "stderr.txt"
    with err_path.open("wb") as err:
        start = time.monotonic()
        measured = subprocess.run(
            [sys.executable, "-c", MEASURE, sys.executable, "-m", "engine", *args],
            env=cluster.env,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            check=True,
        )
        elapsed = time.monotonic() - start
    peak_kb, code = (int(word) for word in measured.stdout.split())
    return code, err_path.read_text(), elapsed, peak_kb / 1024


def test_apply_of_an_alias_bomb_exits_2_within_seconds_and_small(cluster: Cluster, tmp_path: Path) -> None:
    bomb = cluster.write("bomb.yaml", alias_bomb())

    code, stderr, elapsed_s, peak_mb = run_measured(cluster, "apply", str(bomb), "--wait", workdir=tmp_path)

    assert code == 2, stderr
    message = " ".join(stderr.split())
    assert f"{bomb}:" in message and "alias bomb" in message and "Traceback" not in stderr
    assert elapsed_s < WALL_CLOCK_S, f"took {elapsed_s:.2f}s"
    assert peak_mb < PEAK_RSS_MB, f"peak RSS {peak_mb:.0f} MB"
    assert json.loads(cluster.cli("workflows", "list", "--json").stdout) == []
