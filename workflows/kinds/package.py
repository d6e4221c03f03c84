"""The `package` kind: a Debian package installed (at a version, or the newest), or removed, through apt."""

from __future__ import annotations

import os
import shlex
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from common.models import Change
from workflows.context import StepContext
from workflows.kinds._run import Ran, run_tool
from workflows.kinds.package_rules import (
    Available,
    Decision,
    Installed,
    State,
    decide,
    parse_dpkg_query,
    parse_policy,
    parse_removals,
)
from workflows.output import Output
from workflows.registry import Provider, StepError

OPTIONS_ENV = "CONVERGE_APT_OPTIONS"
"""Extra options for every apt-get and apt-cache the agent runs (shell words, e.g. `-o Dir::Etc::SourceList=
/srv/mirror.list`): set in the agent's environment, for a mirror or a test repository."""
DEFAULT_OPTIONS = ("-o", "DPkg::Lock::Timeout=10")
"""Wait a little for a dpkg lock another process holds (after that the step fails and is retried)."""
APT_ENV = {"DEBIAN_FRONTEND": "noninteractive", "APT_LISTCHANGES_FRONTEND": "none", "LC_ALL": "C.UTF-8"}
"""No prompt, no pager, and messages in English so that a held lock can be told apart."""
KEEP_CONFIG = ("-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold")
"""A changed configuration file the operator edited is kept, never asked about."""
_LOCKED = ("Could not get lock", "Unable to acquire the dpkg frontend lock", "Unable to lock directory")

PackageName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9+.-]+(:[a-z0-9-]+)?$")]
DebianVersion = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9.+~:-]+$", max_length=256)]


class PackageSpec(BaseModel):
    """A Debian package and the state it should be in."""

    model_config = ConfigDict(extra="forbid")

    name: PackageName = Field(description="The package's name, as apt knows it (`nginx`, `libssl3:amd64`).")
    state: State = Field(
        default="present",
        description="`present`: installed (any version, or `version`); `latest`: at the newest version the "
        "agent's package lists offer; `absent`: removed.",
    )
    version: DebianVersion | None = Field(
        default=None,
        description="With `present`: exactly this version (as `apt-cache policy` shows it); an upgrade or a "
        "downgrade installs it.",
    )
    purge: bool = Field(
        default=False, description="With `absent`: remove the package's configuration files too."
    )

    @model_validator(mode="after")
    def _fields_fit_state(self) -> Self:
        if self.version is not None and self.state != "present":
            raise ValueError(
                f"`version` pins the version to install: it needs state present, not {self.state}"
            )
        if self.purge and self.state != "absent":
            raise ValueError("`purge` removes configuration files: it needs state absent")
        return self


class PackageProvider(Provider[PackageSpec]):
    """Observes with dpkg-query and apt-cache, then runs one apt-get (install NAME=VERSION, remove or purge).

    When the package lists do not hold what is asked for, `apply` runs apt-get update first; a plan does not.
    A removal that would take other packages with it is refused. A dpkg lock held by another process (say,
    an unattended upgrade) fails the step after 10 s, and its retry policy tries again.

    Every apt-get and apt-cache gets the options in the agent's environment variable CONVERGE_APT_OPTIONS
    (shell words), e.g. `-o Dir::Etc::SourceList=/etc/converge/mirror.list -o Dir::Etc::SourceParts=-` for
    sources of its own; it runs with DEBIAN_FRONTEND=noninteractive and keeps edited configuration files.
    """

    kind = "package"
    spec_model = PackageSpec

    def identity(self, spec: PackageSpec) -> str | None:
        return f"package:{spec.name}"

    def check(self, spec: PackageSpec, ctx: StepContext) -> Change:
        decision = _decide(spec, ctx)
        if decision.refresh and decision.version is None:
            return Change(action=decision.action, diff=f"{decision.diff} (apt-get update runs first)")
        return Change(action=decision.action, diff=decision.diff)

    def apply(self, spec: PackageSpec, change: Change, ctx: StepContext) -> None:
        output = Output()
        try:
            _converge(spec, ctx, output)
        finally:
            output.close()
            ctx.output(output.document())


def _converge(spec: PackageSpec, ctx: StepContext, output: Output) -> None:
    decision = _decide(spec, ctx)
    if decision.refresh:
        ctx.progress(None, "apt-get update")
        _checked(_apt("apt-get", ["update"], ctx, output), "refresh the package lists")
        decision = _decide(spec, ctx)
        if decision.refresh:
            raise _unavailable(spec, _available(spec.name, ctx))
    if decision.verb == "none":
        return
    if decision.verb in ("remove", "purge"):
        _refuse_dependents(spec.name, decision.verb, ctx)
        argv = [decision.verb, "-y", "-q", spec.name]
    else:
        wanted = f"{spec.name}={decision.version}"
        argv = ["install", "-y", "-q", "--no-install-recommends", *KEEP_CONFIG, wanted]
        if decision.verb == "downgrade":
            argv.insert(1, "--allow-downgrades")
    ctx.progress(None, f"apt-get {decision.verb} {spec.name}: {decision.diff}")
    _checked(_apt("apt-get", argv, ctx, output), f"{decision.verb} {spec.name}")
    after = _decide(spec, ctx)
    if after.verb != "none":
        raise StepError(f"apt-get succeeded but {spec.name} is still not {spec.state}: {after.diff}")


def _decide(spec: PackageSpec, ctx: StepContext) -> Decision:
    available = Available() if spec.state == "absent" else _available(spec.name, ctx)
    return decide(spec.state, spec.version, _installed(spec.name, ctx), available, purge=spec.purge)


def _installed(name: str, ctx: StepContext) -> Installed:
    ran = run_tool(["dpkg-query", "-W", "-f", "${db:Status-Status}\\t${Version}\\n", name], ctx, env=APT_ENV)
    if ran.code not in (0, 1):  # 1: dpkg never heard of it
        raise StepError(f"cannot read the state of {name}: {ran.failure()}")
    return parse_dpkg_query(ran.stdout if ran.code == 0 else "")


def _available(name: str, ctx: StepContext) -> Available:
    return parse_policy(_checked(_apt("apt-cache", ["policy", name], ctx), f"look up {name}").stdout)


def _refuse_dependents(name: str, verb: str, ctx: StepContext) -> None:
    simulated = _checked(_apt("apt-get", ["-s", verb, name], ctx), f"simulate the {verb} of {name}")
    others = sorted(set(parse_removals(simulated.stdout)) - {name, name.partition(":")[0]})
    if others:
        raise StepError(
            f"removing {name} would also remove {', '.join(others)}, which depend on it: declare those "
            f"`state: absent` first (with a depends_on), or keep {name}",
            retryable=False,
        )


def _unavailable(spec: PackageSpec, available: Available) -> StepError:
    if not available.versions and available.candidate is None:
        return StepError(
            f"package {spec.name} is unknown to apt on this host, even after apt-get update: check the name, "
            f"or add the source that has it to the agent's apt sources",
            retryable=False,
        )
    offered = ", ".join(available.versions) or "none"
    return StepError(
        f"version {spec.version} of {spec.name} is not in the agent's package lists (they offer: {offered}): "
        f"choose one of those, or add the source that has it",
        retryable=False,
    )


def apt_options() -> list[str]:
    """The options every apt-get and apt-cache gets: DEFAULT_OPTIONS, then those of CONVERGE_APT_OPTIONS."""
    try:
        extra = shlex.split(os.environ.get(OPTIONS_ENV, ""))
    except ValueError as exc:
        raise StepError(
            f"the agent's {OPTIONS_ENV} cannot be read as shell words ({exc}): fix its quoting",
            retryable=False,
        ) from exc
    return [*DEFAULT_OPTIONS, *extra]


def _apt(tool: str, argv: list[str], ctx: StepContext, output: Output | None = None) -> Ran:
    return run_tool([tool, *apt_options(), *argv], ctx, env=APT_ENV, output=output)


def _checked(ran: Ran, doing: str) -> Ran:
    """`ran` if it succeeded; else a StepError, retryable only when it might pass later (a held lock, a
    mirror that did not answer), not when apt refused what was asked."""
    if ran.code == 0:
        return ran
    if any(marker in ran.stderr for marker in _LOCKED):
        raise StepError(
            f"cannot {doing}: the dpkg lock is held by another process (an unattended upgrade, another apt): "
            f"the step is retried; {ran.stderr}"
        )
    if "dpkg was interrupted" in ran.stderr:
        raise StepError(
            f"cannot {doing}: an earlier dpkg run was interrupted (killed mid-install?): run "
            f"`dpkg --configure -a` on the host, then retry the workflow",
            retryable=False,
        )
    refused = "Unable to locate package" in ran.stderr or "was not found" in ran.stderr
    raise StepError(f"cannot {doing}: {ran.failure()}", retryable=not refused)
