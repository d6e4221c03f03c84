"""What the `user` and `group` kinds decide, apart from the system's tools: an account as observed, turned
into the arguments of one useradd/usermod/userdel (or groupadd/groupmod/groupdel) and a diff."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from common.models import Action


@dataclass(frozen=True)
class Account:
    """A user as the password and group databases hold it; a group is one with only `gid` set."""

    uid: int | None = None
    gid: int | None = None
    groups: tuple[str, ...] | None = None
    home: str | None = None
    shell: str | None = None


@dataclass(frozen=True)
class Plan:
    """The one tool to run (`argv`, without the tool's name and the account's), and what it changes."""

    action: Action
    diff: str = ""
    argv: list[str] = field(default_factory=list)


# (field, option of useradd/usermod and groupadd/groupmod): the order of the diff and of the arguments.
_OPTIONS: tuple[tuple[str, str], ...] = (
    ("uid", "-u"),
    ("gid", "-g"),
    ("groups", "-G"),
    ("home", "-d"),
    ("shell", "-s"),
)


def _shown(name: str, value: object) -> str:
    if name == "groups":
        assert isinstance(value, tuple)
        return ",".join(value) if value else "(none)"
    return str(value)


def _argument(value: object) -> str:
    return ",".join(value) if isinstance(value, tuple) else str(value)


def differences(current: Account, desired: Account) -> list[str]:
    """The fields of `desired` that are set and differ from `current` (unset ones are left alone)."""
    return [
        name
        for name, _ in _OPTIONS
        if getattr(desired, name) is not None and getattr(desired, name) != getattr(current, name)
    ]


def plan_present(
    kind: str, name: str, current: Account | None, desired: Account, create: Sequence[str]
) -> Plan:
    """Create the account with every field given (plus `create`, the creation-only options), or change
    the fields that differ."""
    if current is None:
        fields = [field for field, _ in _OPTIONS if getattr(desired, field) is not None]
        argv = [*create, *_arguments(desired, fields)]
        lines = [f"create {kind} {name}"] + [f"{f} {_shown(f, getattr(desired, f))}" for f in fields]
        return Plan("create", "\n".join(lines), argv)
    changed = differences(current, desired)
    if not changed:
        return Plan("none")
    lines = [f"{f} {_shown(f, getattr(current, f))} -> {_shown(f, getattr(desired, f))}" for f in changed]
    return Plan("update", "\n".join(lines), _arguments(desired, changed))


def plan_absent(kind: str, name: str, current: Account | None, remove: Sequence[str] = ()) -> Plan:
    if current is None:
        return Plan("none")
    return Plan("update", f"remove {kind} {name}", list(remove))


def _arguments(desired: Account, fields: Sequence[str]) -> list[str]:
    options = dict(_OPTIONS)
    return [word for f in fields for word in (options[f], _argument(getattr(desired, f)))]
