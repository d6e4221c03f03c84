"""Host side of the `user` and `group` kinds: the password and group databases read through pwd and grp,
and the shadow tools (useradd, groupmod...) run with their failures explained."""

from __future__ import annotations

import grp
import pwd
from collections.abc import Sequence
from typing import Annotated

from pydantic import StringConstraints

from workflows.context import StepContext
from workflows.kinds._run import run_tool
from workflows.kinds.account_rules import Account
from workflows.registry import StepError

AccountName = Annotated[str, StringConstraints(pattern=r"^[a-z_][a-z0-9_-]{0,30}\$?$")]
"""A user or group name the shadow tools accept everywhere: lower case, up to 32 characters."""

_RETRYABLE = frozenset({1, 10})
"""Exit codes of the shadow tools that a retry can fix: the password or group file could not be updated
(another process held its lock). Others (a uid in use, a group that does not exist...) need a new spec."""


def observe_user(name: str) -> Account | None:
    """The user `name` with its supplementary groups, or None when there is none."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None
    groups = tuple(sorted(g.gr_name for g in grp.getgrall() if name in g.gr_mem))
    return Account(entry.pw_uid, entry.pw_gid, groups, entry.pw_dir, entry.pw_shell)


def observe_group(name: str) -> Account | None:
    try:
        return Account(gid=grp.getgrnam(name).gr_gid)
    except KeyError:
        return None


def missing_groups(names: Sequence[str]) -> list[str]:
    return [name for name in names if observe_group(name) is None]


def gid_exists(gid: int) -> bool:
    try:
        grp.getgrgid(gid)
    except KeyError:
        return False
    return True


def run_account_tool(tool: str, argv: Sequence[str], name: str, ctx: StepContext) -> None:
    """Run `tool ARGV... NAME`; a failure becomes a StepError with the tool's own message."""
    ctx.progress(None, f"{tool} {name}")
    ran = run_tool([tool, *argv, name], ctx, env={"LC_ALL": "C.UTF-8"})
    if ran.code != 0:
        raise StepError(f"cannot {tool} {name}: {ran.failure()}", retryable=ran.code in _RETRYABLE)
