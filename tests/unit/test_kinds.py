"""The built-in kinds against a real filesystem and real processes, in a temporary directory."""

from __future__ import annotations

import os
import signal
import stat
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from workflows.context import NullContext
from workflows.execute import execute
from workflows.kinds import (
    CommandSpec,
    DirectorySpec,
    FileSpec,
    WaitForProvider,
    WaitForSpec,
    builtin_providers,
)
from workflows.kinds import command as command_kind
from workflows.registry import StepError, default_registry
from workflows.testing import run_resource

OLD_NS = 1_000_000_000 * 1_000_000_000  # an mtime far from now, so that any rewrite would show


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def age(path: Path) -> int:
    """Set the mtime of `path` to a fixed past instant and return it."""
    os.utime(path, ns=(OLD_NS, OLD_NS))
    return os.stat(path).st_mtime_ns


class TimedContext(NullContext):
    """A NullContext that also records when each progress call came, and can wake a waiting thread."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []
        self.reported = threading.Event()

    def progress(self, percent: float | None, message: str | None = None) -> None:
        super().progress(percent, message)
        self.times.append(time.monotonic())
        self.reported.set()


# --- registry -----------------------------------------------------------------------------------------


def test_default_registry_holds_the_builtin_kinds_and_only_the_engine_kinds_have_a_default_role() -> None:
    assert default_registry().kinds() == [
        "catalog",
        "command",
        "directory",
        "file",
        "group",
        "machine_import",
        "package",
        "user",
        "wait_for",
    ]
    # only the engine's own agent's kinds have one: role `engine`
    roles = {p.kind: p.default_role for p in builtin_providers() if p.default_role is not None}
    assert roles == {"catalog": "engine", "machine_import": "engine"}


# --- file ---------------------------------------------------------------------------------------------


def test_missing_file_is_created_with_its_content_and_mode(tmp_path: Path) -> None:
    target = tmp_path / "index.html"

    outcome, _ = run_resource("file", {"path": str(target), "content": "hello\n", "mode": "0640"})

    assert outcome.changed is True
    assert outcome.change.action == "create"
    assert "--- /dev/null" in outcome.change.diff
    assert "+hello" in outcome.change.diff
    assert target.read_bytes() == b"hello\n"
    assert mode(target) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["index.html"]  # no temporary file left behind


def test_compliant_file_is_not_touched_and_reports_no_change(tmp_path: Path) -> None:
    target = tmp_path / "index.html"
    target.write_bytes(b"hello\n")
    target.chmod(0o644)
    mtime = age(target)

    outcome, _ = run_resource("file", {"path": str(target), "content": "hello\n"})

    assert outcome.changed is False
    assert outcome.change.action == "none"
    assert outcome.change.diff == ""
    assert os.stat(target).st_mtime_ns == mtime


def test_file_with_other_content_is_replaced_and_the_diff_is_unified(tmp_path: Path) -> None:
    target = tmp_path / "motd"
    target.write_text("one\ntwo\n")
    target.chmod(0o644)

    outcome, _ = run_resource("file", {"path": str(target), "content": "one\nthree\n"})

    assert outcome.changed is True
    assert outcome.change.action == "update"
    assert f"--- {target} (current)" in outcome.change.diff
    assert f"+++ {target} (desired)" in outcome.change.diff
    assert "-two" in outcome.change.diff and "+three" in outcome.change.diff
    assert "mode" not in outcome.change.diff
    assert target.read_text() == "one\nthree\n"


def test_mode_only_change_chmods_without_rewriting_the_file(tmp_path: Path) -> None:
    target = tmp_path / "secret"
    target.write_text("s3cret\n")
    target.chmod(0o600)
    mtime = age(target)
    inode = os.stat(target).st_ino

    outcome, _ = run_resource("file", {"path": str(target), "content": "s3cret\n", "mode": "0644"})

    assert outcome.change.action == "update"
    assert outcome.change.diff == "mode 0600 -> 0644"
    assert mode(target) == 0o644
    assert os.stat(target).st_mtime_ns == mtime
    assert os.stat(target).st_ino == inode


def test_content_is_compared_byte_for_byte(tmp_path: Path) -> None:
    target = tmp_path / "crlf"
    target.write_bytes(b"line\r\n")
    target.chmod(0o644)

    outcome, _ = run_resource("file", {"path": str(target), "content": "line\n"})

    assert outcome.change.action == "update"
    assert target.read_bytes() == b"line\n"


def test_missing_trailing_newline_is_marked_in_the_diff(tmp_path: Path) -> None:
    target = tmp_path / "f"

    outcome, _ = run_resource("file", {"path": str(target), "content": "no newline"}, mode="check")

    assert "+no newline\n\\ No newline at end of file" in outcome.change.diff


def test_check_mode_reports_the_change_but_writes_nothing(tmp_path: Path) -> None:
    target = tmp_path / "f"

    outcome, _ = run_resource("file", {"path": str(target), "content": "x\n"}, mode="check")

    assert outcome.change.action == "create"
    assert outcome.changed is False
    assert not target.exists()


def test_file_in_a_missing_directory_fails_asking_for_a_directory_resource(tmp_path: Path) -> None:
    target = tmp_path / "nowhere" / "f"

    with pytest.raises(StepError, match=r"add a `directory` resource.*depends_on") as raised:
        run_resource("file", {"path": str(target), "content": "x\n"})

    assert raised.value.retryable is False


def test_permission_denied_on_write_is_not_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def denied(*args: Any, **kwargs: Any) -> Any:
        raise PermissionError(13, "Permission denied")

    # The tests may run as root, which no file mode stops: make the filesystem refuse instead.
    monkeypatch.setattr("tempfile.mkstemp", denied)

    with pytest.raises(StepError, match="permission denied") as raised:
        run_resource("file", {"path": str(tmp_path / "f"), "content": "x\n"})

    assert raised.value.retryable is False


def test_failed_write_leaves_the_old_file_and_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "f"
    target.write_text("old\n")

    def full_disk(src: Any, dst: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("os.replace", full_disk)

    with pytest.raises(StepError, match="No space left") as raised:
        run_resource("file", {"path": str(target), "content": "new\n"})

    assert raised.value.retryable is True
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["f"]


def test_a_directory_where_the_file_should_be_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(StepError, match="not a regular file") as raised:
        run_resource("file", {"path": str(tmp_path), "content": "x"})

    assert raised.value.retryable is False


def test_file_behind_a_symlink_is_written_through_the_link(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.write_text("old\n")
    link = tmp_path / "link"
    link.symlink_to(real)

    run_resource("file", {"path": str(link), "content": "new\n"})

    assert link.is_symlink()
    assert real.read_text() == "new\n"


# --- directory ----------------------------------------------------------------------------------------


def test_missing_directory_is_created_with_its_parents_and_mode(tmp_path: Path) -> None:
    target = tmp_path / "srv" / "www"

    outcome, _ = run_resource("directory", {"path": str(target), "mode": "0750"})

    assert outcome.changed is True
    assert outcome.change.action == "create"
    assert target.is_dir()
    assert mode(target) == 0o750


def test_compliant_directory_reports_no_change(tmp_path: Path) -> None:
    target = tmp_path / "www"
    target.mkdir()
    target.chmod(0o755)

    outcome, _ = run_resource("directory", {"path": str(target)})

    assert outcome.changed is False
    assert outcome.change.action == "none"


def test_directory_with_another_mode_is_chmodded(tmp_path: Path) -> None:
    target = tmp_path / "www"
    target.mkdir()
    target.chmod(0o700)

    outcome, _ = run_resource("directory", {"path": str(target), "mode": "0755"})

    assert outcome.change.action == "update"
    assert outcome.change.diff == "mode 0700 -> 0755"
    assert mode(target) == 0o755


def test_a_file_where_the_directory_should_be_is_a_permanent_error(tmp_path: Path) -> None:
    target = tmp_path / "www"
    target.write_text("")

    with pytest.raises(StepError, match="not a directory") as raised:
        run_resource("directory", {"path": str(target)})

    assert raised.value.retryable is False


# --- command ------------------------------------------------------------------------------------------


def test_command_runs_when_its_creates_path_is_missing(tmp_path: Path) -> None:
    marker = tmp_path / "done"
    spec = {"run": f"echo ran > {marker}", "creates": str(marker)}

    outcome, ctx = run_resource("command", spec)

    assert outcome.changed is True
    assert outcome.change.action == "create"
    assert outcome.change.diff == f"run: echo ran > {marker}"
    assert marker.read_text() == "ran\n"
    assert ctx.reports == [(None, "running")]


def test_command_is_skipped_when_its_creates_path_exists(tmp_path: Path) -> None:
    marker = tmp_path / "done"
    marker.write_text("")

    outcome, ctx = run_resource("command", {"run": "exit 3", "creates": str(marker)})

    assert outcome.changed is False
    assert outcome.change.action == "none"
    assert ctx.reports == []


def test_command_is_skipped_when_unless_succeeds(tmp_path: Path) -> None:
    outcome, _ = run_resource("command", {"run": "exit 3", "unless": f"test -d {tmp_path}"})

    assert outcome.changed is False


def test_command_runs_when_unless_fails(tmp_path: Path) -> None:
    marker = tmp_path / "done"
    spec = {"run": f"touch {marker}", "unless": f"test -e {marker}"}

    first, _ = run_resource("command", spec)
    second, _ = run_resource("command", spec)

    assert (first.changed, second.changed) == (True, False)


def test_failing_command_raises_with_its_exit_code_and_stderr(tmp_path: Path) -> None:
    spec = {"run": "echo boom >&2; exit 7", "creates": str(tmp_path / "never")}

    with pytest.raises(StepError, match="exited with code 7: boom") as raised:
        run_resource("command", spec)

    assert raised.value.retryable is True


def test_command_that_does_not_create_its_path_fails(tmp_path: Path) -> None:
    with pytest.raises(StepError, match="did not create"):
        run_resource("command", {"run": "true", "creates": str(tmp_path / "never")})


def test_command_keeps_only_the_tail_of_a_long_output(tmp_path: Path) -> None:
    spec = {"run": "head -c 100000 /dev/zero | tr '\\0' x >&2; echo END >&2; exit 1", "unless": "false"}

    with pytest.raises(StepError) as raised:
        run_resource("command", spec)

    message = str(raised.value)
    assert message.endswith("END")
    assert len(message) < 4200


def test_command_runs_in_its_cwd_with_its_env_added(tmp_path: Path) -> None:
    marker = tmp_path / "out"
    spec = {
        "run": 'printf "%s %s" "$GREETING" "$(pwd)" > out; test -n "$PATH"',
        "creates": str(marker),
        "cwd": str(tmp_path),
        "env": {"GREETING": "hi"},
    }

    run_resource("command", spec)

    assert marker.read_text() == f"hi {tmp_path}"


def test_command_and_its_guard_see_the_id_of_the_agent_running_them(tmp_path: Path) -> None:
    log = tmp_path / "agents"
    spec = {"run": f'echo "$CONVERGE_AGENT_ID" >> {log}', "unless": f'grep -qx "$CONVERGE_AGENT_ID" {log}'}
    registry = default_registry()

    first = execute(registry, "command", spec, "apply", NullContext(agent_id="web-7"))
    again = execute(registry, "command", spec, "apply", NullContext(agent_id="web-7"))
    other = execute(registry, "command", spec, "apply", NullContext(agent_id="web-8"))

    assert (first.changed, again.changed, other.changed) == (True, False, True)
    assert log.read_text() == "web-7\nweb-8\n"


def test_command_sees_the_fencing_epoch_it_runs_under(tmp_path: Path) -> None:
    out = tmp_path / "epoch"
    spec = {"run": f'echo "$CONVERGE_EPOCH" > {out}', "creates": str(out)}

    execute(default_registry(), "command", spec, "apply", NullContext(epoch=12))

    assert out.read_text() == "12\n"


def test_command_does_not_wait_for_a_background_child_holding_its_output(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    spec = {"run": f"sleep 30 & echo $! > {pidfile}", "creates": str(pidfile)}
    started = time.monotonic()
    try:
        run_resource("command", spec)
        assert time.monotonic() - started < 5
    finally:
        if pidfile.exists():
            os.kill(int(pidfile.read_text()), signal.SIGKILL)


class Cancelled(Exception):
    """Stands for a cancellation arriving while a command runs."""


def gone(pid: int) -> bool:
    """True when `pid` no longer runs (a zombie awaiting its new parent counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_interrupted_command_is_killed_with_its_children(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pidfile = tmp_path / "pid"
    real_read_ready = command_kind._read_ready

    def cancel_once_started(sel: Any, timeout: float) -> bool:
        if pidfile.exists() and pidfile.read_text().strip():
            raise Cancelled
        return real_read_ready(sel, timeout)

    monkeypatch.setattr(command_kind, "_read_ready", cancel_once_started)
    spec = {"run": f"sleep 30 & echo $! > {pidfile}; wait", "creates": str(tmp_path / "never")}

    with pytest.raises(Cancelled):
        run_resource("command", spec)

    child = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while not gone(child) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert gone(child)


def test_command_in_a_missing_cwd_fails_without_retry(tmp_path: Path) -> None:
    spec = {"run": "true", "unless": "false", "cwd": str(tmp_path / "missing")}

    with pytest.raises(StepError, match="cwd") as raised:
        run_resource("command", spec)

    assert raised.value.retryable is False


# --- wait_for -----------------------------------------------------------------------------------------


def test_wait_for_seconds_reports_progress_at_least_every_half_second() -> None:
    provider = WaitForProvider()
    spec = provider.parse({"seconds": 1.2})
    ctx = TimedContext()
    started = time.monotonic()

    provider.apply(spec, provider.check(spec, ctx), ctx)

    assert time.monotonic() - started >= 1.2
    assert ctx.reports[-1] == (100.0, "waited 1.2s of 1.2s")
    assert all(message and message.startswith("waited ") for _, message in ctx.reports)
    gaps = [b - a for a, b in zip([started, *ctx.times], ctx.times, strict=False)]
    assert max(gaps) < 0.5
    percents = [p for p, _ in ctx.reports if p is not None]
    assert len(percents) == len(ctx.reports)
    assert percents == sorted(percents)


def test_wait_for_zero_seconds_returns_at_once_without_progress() -> None:
    started = time.monotonic()

    outcome, ctx = run_resource("wait_for", {"seconds": 0})

    assert time.monotonic() - started < 0.1
    assert ctx.reports == []
    assert outcome.change.diff == "wait 0s"


def test_wait_for_is_a_gate_that_runs_but_reports_no_change() -> None:
    outcome, ctx = run_resource("wait_for", {"seconds": 0.05})

    assert outcome.change.action == "none"
    assert outcome.changed is False
    assert ctx.reports  # apply ran even though check found nothing to change


def test_wait_for_path_fails_when_it_does_not_appear_in_time(tmp_path: Path) -> None:
    target = tmp_path / "ready"

    with pytest.raises(StepError, match=r"did not appear within 0\.3s") as raised:
        run_resource("wait_for", {"path": str(target), "within_s": 0.3})

    assert raised.value.retryable is True


def test_wait_for_path_returns_once_another_thread_creates_it(tmp_path: Path) -> None:
    target = tmp_path / "ready"
    provider = WaitForProvider()
    spec = provider.parse({"path": str(target), "within_s": 10})
    ctx = TimedContext()

    def create_once_waiting() -> None:
        ctx.reported.wait(timeout=10)
        target.touch()

    creator = threading.Thread(target=create_once_waiting)
    creator.start()
    started = time.monotonic()
    provider.apply(spec, provider.check(spec, ctx), ctx)
    creator.join()

    assert time.monotonic() - started < 2
    assert ctx.reports[0] == (None, f"waiting up to 10s for {target}")
    assert ctx.reports[-1] == (100.0, f"{target} is present")


def test_wait_for_path_describes_itself_in_the_plan(tmp_path: Path) -> None:
    target = tmp_path / "ready"

    absent, _ = run_resource("wait_for", {"path": str(target)}, mode="check")
    target.touch()
    present, _ = run_resource("wait_for", {"path": str(target)}, mode="check")

    assert absent.change.diff == f"wait up to 60s for {target}"
    assert present.change.diff == f"wait for {target} (present)"


# --- spec validation ----------------------------------------------------------------------------------


def test_command_without_a_guard_is_rejected_as_not_idempotent() -> None:
    with pytest.raises(ValidationError, match="not idempotent"):
        CommandSpec.model_validate({"run": "make install"})


def test_invalid_spec_is_a_permanent_step_error() -> None:
    with pytest.raises(StepError, match="invalid spec for command") as raised:
        run_resource("command", {"run": "make install"})

    assert raised.value.retryable is False


@pytest.mark.parametrize(
    ("model", "spec", "complaint"),
    [
        (FileSpec, {"path": "etc/motd", "content": ""}, "absolute path"),
        (DirectorySpec, {"path": "www"}, "absolute path"),
        (CommandSpec, {"run": "true", "creates": "done"}, "absolute path"),
        (WaitForSpec, {"path": "ready"}, "absolute path"),
        (FileSpec, {"path": "/f", "content": "", "mode": "0999"}, "octal"),
        (FileSpec, {"path": "/f", "content": "", "mode": "rw-r--r--"}, "octal"),
        (DirectorySpec, {"path": "/d", "mode": 755}, "quoted octal string"),
        (DirectorySpec, {"path": "/d", "mode": "17777"}, "octal"),
        (FileSpec, {"path": "/f", "content": "", "owner": "root"}, "Extra inputs"),
        (CommandSpec, {"run": "  ", "unless": "true"}, "non-empty"),
        (WaitForSpec, {"seconds": 1, "path": "/ready"}, "exactly one"),
        (WaitForSpec, {}, "exactly one"),
        (WaitForSpec, {"seconds": -1}, "greater than or equal"),
        (WaitForSpec, {"seconds": 1, "within_s": 5}, "no meaning"),
        (WaitForSpec, {"path": "/ready", "within_s": 0}, "greater than 0"),
    ],
)
def test_invalid_specs_are_rejected_with_a_reason(model: Any, spec: dict[str, Any], complaint: str) -> None:
    with pytest.raises(ValidationError, match=complaint):
        model.model_validate(spec)


def test_modes_are_normalised_to_four_octal_digits() -> None:
    assert FileSpec.model_validate({"path": "/f", "content": "", "mode": "644"}).mode == "0644"
    assert DirectorySpec.model_validate({"path": "/d"}).mode == "0755"
