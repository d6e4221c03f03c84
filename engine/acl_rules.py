"""Which agents' Redis users to copy where: the pure part of the ACL mirror (engine.acl_mirror).

Redis does not replicate ACL SETUSER: the users the engine makes on admission (engine.acl) exist on the node
where they were made. Behind Sentinel a replica may become the primary, and the agents must then still be
able to log in, so every replica gets the primary's `converge-agent-*` users, copied from `ACL LIST` (which
shows passwords as `#<sha256>` hashes, a form `ACL SETUSER` takes back), and loses those the primary no
longer has (revoked agents). Users that are not the agents' are never touched.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.acl import USER_PREFIX


@dataclass(frozen=True)
class Changes:
    """What to do on one replica: users to set (name, then the rules after `reset`) and users to delete."""

    set: dict[str, list[str]] = field(default_factory=dict)
    delete: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.set or self.delete)


def agent_users(acl_list: list[str]) -> dict[str, list[str]]:
    """The agents' users in an `ACL LIST` answer (`user NAME RULE...` lines), by name, with their rules.

    Splitting on spaces is safe for these users: engine.acl makes their key patterns and channels with no
    space in them, and their password appears only as a hash."""
    users: dict[str, list[str]] = {}
    for line in acl_list:
        words = line.split(" ")
        if len(words) >= 2 and words[0] == "user" and words[1].startswith(USER_PREFIX):
            users[words[1]] = words[2:]
    return users


def changes(primary: dict[str, list[str]], replica: dict[str, list[str]]) -> Changes:
    """What makes the replica's agents' users the primary's: set those missing or different, delete those
    the primary does not have."""
    return Changes(
        set={name: rules for name, rules in sorted(primary.items()) if replica.get(name) != rules},
        delete=sorted(set(replica) - set(primary)),
    )


def setuser_args(name: str, rules: list[str]) -> list[str]:
    """The `ACL SETUSER` arguments that make `name` exactly `rules`: `reset` first, so that nothing an older
    copy had (another password, more keys) survives."""
    return ["ACL", "SETUSER", name, "reset", *rules]
