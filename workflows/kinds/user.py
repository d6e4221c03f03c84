"""The `user` kind: a local user that exists with the given ids, groups, home and shell, or does not."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from common.models import Change
from workflows.context import StepContext
from workflows.kinds._accounts import (
    AccountName,
    gid_exists,
    missing_groups,
    observe_user,
    run_account_tool,
)
from workflows.kinds._common import AbsolutePath
from workflows.kinds.account_rules import Account, Plan, plan_absent, plan_present
from workflows.registry import Provider, StepError


class UserSpec(BaseModel):
    """A local user (in /etc/passwd), made with useradd and changed with usermod. A field left unset is
    left as the system made it."""

    model_config = ConfigDict(extra="forbid")

    name: AccountName = Field(description="The user's login name.")
    state: Literal["present", "absent"] = Field(
        default="present",
        description="`present`: the user exists as described; `absent`: userdel removes it.",
    )
    uid: int | None = Field(default=None, ge=0, description="Its numeric user id.")
    gid: int | None = Field(
        default=None, ge=0, description="The id of its primary group, which must exist (a `group` resource)."
    )
    groups: list[AccountName] | None = Field(
        default=None,
        description="Exactly these supplementary groups, which must exist (`[]`: none); unset: left alone.",
    )
    home: AbsolutePath | None = Field(
        default=None, description="Its home directory (usermod -d changes the entry and moves nothing)."
    )
    shell: AbsolutePath | None = Field(default=None, description="Its login shell.")
    create_home: bool = Field(
        default=True, description="When the user is created, create its home directory too (useradd -m)."
    )
    remove_home: bool = Field(
        default=False, description="With `absent`: remove its home directory and mail spool (userdel -r)."
    )

    @model_validator(mode="after")
    def _fields_fit_state(self) -> Self:
        described = [f for f in ("uid", "gid", "groups", "home", "shell") if getattr(self, f) is not None]
        if self.state == "absent" and described:
            raise ValueError(f"a user that is `absent` takes no {', '.join(described)}: remove them")
        if self.remove_home and self.state != "absent":
            raise ValueError("`remove_home` removes the home of a user being removed: it needs state absent")
        return self

    def desired(self) -> Account:
        groups = None if self.groups is None else tuple(sorted(set(self.groups)))
        return Account(self.uid, self.gid, groups, self.home, self.shell)


class UserProvider(Provider[UserSpec]):
    """Observes the user through the pwd and grp modules; runs useradd, usermod or userdel."""

    kind = "user"
    spec_model = UserSpec

    def identity(self, spec: UserSpec) -> str | None:
        return f"user:{spec.name}"

    def check(self, spec: UserSpec, ctx: StepContext) -> Change:
        planned = _plan(spec)
        return Change(action=planned.action, diff=planned.diff)

    def apply(self, spec: UserSpec, change: Change, ctx: StepContext) -> None:
        planned = _plan(spec)
        if planned.action == "none":
            return
        if spec.state == "absent":
            run_account_tool("userdel", planned.argv, spec.name, ctx)
        else:
            _groups_exist(spec)
            run_account_tool(
                "useradd" if planned.action == "create" else "usermod", planned.argv, spec.name, ctx
            )


def _plan(spec: UserSpec) -> Plan:
    current = observe_user(spec.name)
    if spec.state == "absent":
        return plan_absent("user", spec.name, current, ["-r"] if spec.remove_home else [])
    create = ["-m"] if spec.create_home else ["-M"]
    return plan_present("user", spec.name, current, spec.desired(), create)


def _groups_exist(spec: UserSpec) -> None:
    """Before useradd or usermod: a missing group, with the resource that would make it. (Not in check: a
    plan runs before the `group` resource it depends on has made the group.)"""
    missing = missing_groups(spec.groups or [])
    if spec.gid is not None and not gid_exists(spec.gid):
        missing.insert(0, f"gid {spec.gid}")
    if missing:
        raise StepError(
            f"user {spec.name} needs group {', '.join(missing)}, which does not exist on this host: add a "
            f"`group` resource for it and list it in this user's `depends_on`",
            retryable=True,  # the group may be made by a step still running
        )
