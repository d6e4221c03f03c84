"""The `user` and `group` kinds' decisions, apart from the shadow tools: arguments and diffs."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from workflows.kinds import GroupSpec, UserSpec
from workflows.kinds.account_rules import Account, plan_absent, plan_present

ALICE = Account(uid=1001, gid=1001, groups=("adm",), home="/home/alice", shell="/bin/sh")


def test_a_missing_user_is_created_with_every_field_given() -> None:
    desired = Account(uid=1001, groups=("adm", "sudo"), shell="/bin/bash")

    made = plan_present("user", "alice", None, desired, ["-m"])

    assert made.action == "create"
    assert made.argv == ["-m", "-u", "1001", "-G", "adm,sudo", "-s", "/bin/bash"]
    assert made.diff == "create user alice\nuid 1001\ngroups adm,sudo\nshell /bin/bash"


def test_a_compliant_user_needs_nothing_and_unset_fields_are_left_alone() -> None:
    assert plan_present("user", "alice", ALICE, ALICE, []).action == "none"
    assert plan_present("user", "alice", ALICE, Account(shell="/bin/sh"), []).action == "none"


def test_only_the_fields_that_differ_are_changed_each_with_a_diff_line() -> None:
    desired = Account(uid=1001, groups=(), shell="/bin/bash")

    changed = plan_present("user", "alice", ALICE, desired, ["-m"])

    assert changed.action == "update"
    assert changed.argv == ["-G", "", "-s", "/bin/bash"]  # usermod takes no creation-only option
    assert changed.diff == "groups adm -> (none)\nshell /bin/sh -> /bin/bash"


def test_a_group_gets_a_new_gid_and_absent_accounts_are_removed_once() -> None:
    assert plan_present("group", "web", Account(gid=1), Account(gid=2), []).diff == "gid 1 -> 2"
    assert plan_absent("user", "alice", ALICE, ["-r"]).argv == ["-r"]
    assert plan_absent("user", "alice", ALICE).diff == "remove user alice"
    assert plan_absent("group", "web", None).action == "none"


def test_user_spec_sorts_its_groups_and_refuses_fields_an_absent_user_cannot_have() -> None:
    spec = UserSpec.model_validate({"name": "alice", "groups": ["sudo", "adm", "adm"]})
    assert spec.desired().groups == ("adm", "sudo")
    with pytest.raises(ValidationError, match="takes no uid, shell"):
        UserSpec.model_validate({"name": "alice", "state": "absent", "uid": 5, "shell": "/bin/sh"})
    with pytest.raises(ValidationError, match="needs state absent"):
        UserSpec.model_validate({"name": "alice", "remove_home": True})
    with pytest.raises(ValidationError, match="name"):
        UserSpec.model_validate({"name": "-rf"})
    with pytest.raises(ValidationError, match="takes no `gid`"):
        GroupSpec.model_validate({"name": "web", "state": "absent", "gid": 5})
