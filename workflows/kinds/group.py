"""The `group` kind: a local group that exists (with a gid) or does not."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from common.models import Change
from workflows.context import StepContext
from workflows.kinds._accounts import AccountName, observe_group, run_account_tool
from workflows.kinds.account_rules import Account, Plan, plan_absent, plan_present
from workflows.registry import Provider


class GroupSpec(BaseModel):
    """A local group (in /etc/group), made with groupadd and changed with groupmod."""

    model_config = ConfigDict(extra="forbid")

    name: AccountName = Field(description="The group's name.")
    state: Literal["present", "absent"] = Field(
        default="present", description="`present`: the group exists; `absent`: groupdel removes it."
    )
    gid: int | None = Field(
        default=None, ge=0, description="Its numeric id; when unset, groupadd picks one and it is left alone."
    )
    system: bool = Field(default=False, description="Created as a system group (a gid below 1000).")

    @model_validator(mode="after")
    def _fields_fit_state(self) -> Self:
        if self.state == "absent" and (self.gid is not None or self.system):
            raise ValueError("a group that is `absent` takes no `gid` or `system`: remove them")
        return self


class GroupProvider(Provider[GroupSpec]):
    """Observes the group through the grp module; runs groupadd, groupmod -g or groupdel."""

    kind = "group"
    spec_model = GroupSpec

    def identity(self, spec: GroupSpec) -> str | None:
        return f"group:{spec.name}"

    def check(self, spec: GroupSpec, ctx: StepContext) -> Change:
        planned = _plan(spec)
        return Change(action=planned.action, diff=planned.diff)

    def apply(self, spec: GroupSpec, change: Change, ctx: StepContext) -> None:
        planned = _plan(spec)
        if planned.action == "none":
            return
        if spec.state == "absent":
            run_account_tool("groupdel", planned.argv, spec.name, ctx)
        else:
            tool = "groupadd" if planned.action == "create" else "groupmod"
            run_account_tool(tool, planned.argv, spec.name, ctx)


def _plan(spec: GroupSpec) -> Plan:
    current = observe_group(spec.name)
    if spec.state == "absent":
        return plan_absent("group", spec.name, current)
    return plan_present("group", spec.name, current, Account(gid=spec.gid), ["-r"] if spec.system else [])
