"""The `user` and `group` kinds against the host's real password and group databases (as root): each test
uses names of its own and removes what it made, even when it fails."""

from __future__ import annotations

import grp
import os
import pwd
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import Cluster, desired_state
from workflows.registry import StepError
from workflows.testing import run_resource


@pytest.fixture
def names() -> Iterator[tuple[str, str]]:
    """A user name and a group name no one has, deleted from the host after the test."""
    if os.geteuid() != 0:
        pytest.skip("creates users and groups: needs root")
    suffix = uuid.uuid4().hex[:8]
    user, group = f"cvu{suffix}", f"cvg{suffix}"
    yield user, group
    subprocess.run(["userdel", "-r", user], capture_output=True, check=False)
    subprocess.run(["groupdel", group], capture_output=True, check=False)


def free_id() -> int:
    """An id that neither a user nor a group has (from a range useradd does not hand out)."""
    taken = {p.pw_uid for p in pwd.getpwall()} | {g.gr_gid for g in grp.getgrall()}
    return next(n for n in range(61000, 64000) if n not in taken and n + 1 not in taken)


def supplementary(user: str) -> set[str]:
    return {g.gr_name for g in grp.getgrall() if user in g.gr_mem}


def test_a_group_is_created_left_alone_given_a_new_gid_and_removed(names: tuple[str, str]) -> None:
    _, group = names
    gid = free_id()

    made, _ = run_resource("group", {"name": group, "gid": gid})
    again, _ = run_resource("group", {"name": group, "gid": gid})
    moved, _ = run_resource("group", {"name": group, "gid": gid + 1})
    removed, _ = run_resource("group", {"name": group, "state": "absent"})

    assert (made.changed, made.change.action, made.change.diff) == (
        True,
        "create",
        f"create group {group}\ngid {gid}",
    )
    assert again.changed is False
    assert (moved.changed, moved.change.diff) == (True, f"gid {gid} -> {gid + 1}")
    assert removed.changed is True
    with pytest.raises(KeyError):
        grp.getgrnam(group)
    assert run_resource("group", {"name": group, "state": "absent"})[0].changed is False


def test_a_user_is_created_left_alone_modified_and_removed(names: tuple[str, str], tmp_path: Path) -> None:
    user, group = names
    uid = free_id()
    run_resource("group", {"name": group})
    home = tmp_path / user
    spec = {"name": user, "uid": uid, "groups": [group], "home": str(home), "shell": "/bin/sh"}

    made, _ = run_resource("user", spec)
    again, _ = run_resource("user", spec)

    assert (made.changed, made.change.action) == (True, "create")
    entry = pwd.getpwnam(user)
    assert (entry.pw_uid, entry.pw_dir, entry.pw_shell) == (uid, str(home), "/bin/sh")
    assert supplementary(user) == {group}
    assert home.is_dir()
    assert (again.changed, again.change.action) == (False, "none")

    changed, _ = run_resource("user", {"name": user, "uid": uid + 1, "groups": [], "shell": "/bin/bash"})

    assert changed.changed is True
    assert (
        changed.change.diff == f"uid {uid} -> {uid + 1}\ngroups {group} -> (none)\nshell /bin/sh -> /bin/bash"
    )
    entry = pwd.getpwnam(user)
    assert (entry.pw_uid, entry.pw_dir, entry.pw_shell) == (uid + 1, str(home), "/bin/bash")
    assert supplementary(user) == set()

    removed, _ = run_resource("user", {"name": user, "state": "absent", "remove_home": True})

    assert (removed.changed, removed.change.diff) == (True, f"remove user {user}")
    with pytest.raises(KeyError):
        pwd.getpwnam(user)
    assert not home.exists()


def test_a_user_in_a_group_that_does_not_exist_fails_naming_the_group(names: tuple[str, str]) -> None:
    user, group = names

    planned, _ = run_resource("user", {"name": user, "groups": [group]}, mode="check")
    assert planned.change.action == "create"  # a plan does not fail: the group may come from a step before
    with pytest.raises(StepError, match=f"needs group {group}, which does not exist"):
        run_resource("user", {"name": user, "groups": [group]})
    with pytest.raises(KeyError):
        pwd.getpwnam(user)


def test_a_uid_already_taken_fails_for_good_with_useradds_message(names: tuple[str, str]) -> None:
    user, _ = names

    with pytest.raises(StepError, match=r"cannot useradd .*UID 0 is not unique") as raised:
        run_resource("user", {"name": user, "uid": 0, "create_home": False})
    assert raised.value.retryable is False


def test_an_agent_makes_a_group_and_a_user_in_it_then_a_rerun_changes_nothing(
    cluster: Cluster, names: tuple[str, str], tmp_path: Path
) -> None:
    user, group = names
    cluster.start_agent("hosts", agent_id="hosts-1")
    resources = (
        f"  - {{kind: group, name: {group}, role: hosts, spec: {{name: {group}}}}}\n"
        f"  - kind: user\n    name: {user}\n    role: hosts\n    depends_on: [group/{group}]\n"
        f"    spec: {{name: {user}, groups: [{group}], home: {tmp_path / user}, shell: /bin/sh}}\n"
    )
    desired = cluster.write("accounts.yaml", desired_state("accounts", resources))

    first = cluster.apply(desired)
    second = cluster.apply(desired)

    assert first["exit_code"] == 0, first
    assert [s["changed"] for s in first["workflow"]["steps"]] == [True, True]
    assert supplementary(user) == {group}
    assert second["exit_code"] == 0, second
    assert [s["changed"] for s in second["workflow"]["steps"]] == [False, False]
