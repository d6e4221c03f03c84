"""Which agents' Redis users the engine copies to a replica, from the nodes' `ACL LIST`, alone."""

from __future__ import annotations

from engine.acl_rules import Changes, agent_users, changes, setuser_args

A1 = (
    "user converge-agent-a1 on #" + "1" * 64 + " ~converge.role.web ~converge.agent.a1 &* -@all +@all -@admin"
)
A2 = "user converge-agent-a2 on #" + "2" * 64 + " ~converge.agent.a2 &* -@all +@all -@admin"
DEFAULT = "user default on #" + "9" * 64 + " ~* &* +@all"


def test_only_the_agents_users_are_read_with_their_rules() -> None:
    users = agent_users([DEFAULT, A1, "user opsbot on nopass ~* +@read"])

    assert list(users) == ["converge-agent-a1"]
    assert users["converge-agent-a1"][:2] == ["on", "#" + "1" * 64]


def test_a_replica_gets_the_users_it_lacks_or_has_otherwise_and_loses_the_revoked_ones() -> None:
    primary = agent_users([DEFAULT, A1, A2])
    older_a1 = A1.replace("1" * 64, "0" * 64)  # an earlier password of a1
    revoked = "user converge-agent-gone on #" + "3" * 64 + " ~converge.agent.gone &* +@all"

    todo = changes(primary, agent_users([older_a1, revoked, "user default on nopass ~* +@all"]))

    assert todo.set == {name: rules for name, rules in primary.items()}
    assert todo.delete == ["converge-agent-gone"]


def test_a_replica_that_has_the_primarys_users_needs_nothing() -> None:
    users = agent_users([A1, A2])

    assert changes(users, dict(users)) == Changes()
    assert not changes(users, dict(users))


def test_a_user_is_reset_before_its_rules_so_that_nothing_of_an_older_copy_stays() -> None:
    rules = agent_users([A1])["converge-agent-a1"]

    assert setuser_args("converge-agent-a1", rules)[:4] == ["ACL", "SETUSER", "converge-agent-a1", "reset"]
    assert setuser_args("converge-agent-a1", rules)[4:] == rules
