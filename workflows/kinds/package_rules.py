"""What the `package` kind decides, apart from apt and dpkg: the tools' output read into facts, and the
facts (what is installed, what the package lists offer) turned into the one thing to do."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from common.models import Action
from workflows.kinds.debversion import compare

State = Literal["present", "absent", "latest"]
Verb = Literal["none", "install", "upgrade", "downgrade", "repair", "remove", "purge"]

INSTALLED = frozenset({"installed", "triggers-awaiting", "triggers-pending"})
"""dpkg states in which a package is installed and works (triggers pending do not make it broken)."""
GONE = frozenset({"not-installed", "config-files"})
"""dpkg states in which a package's files are gone (its configuration files may remain)."""

_POLICY_VERSION = re.compile(r"^ (?:\*\*\*|   ) (\S+) -?\d+$")
_CANDIDATE = re.compile(r"^\s+Candidate: (\S+)$")
_REMOVED = re.compile(r"^Remv (\S+)")


@dataclass(frozen=True)
class Installed:
    """What dpkg says of the package: its state (dpkg's `db:Status-Status`) and installed version."""

    status: str = "not-installed"
    version: str | None = None

    @property
    def working(self) -> bool:
        return self.status in INSTALLED

    @property
    def present(self) -> bool:
        """Some of its files are on the host: installed, or half-way through dpkg."""
        return self.status not in GONE


@dataclass(frozen=True)
class Available:
    """What apt's package lists offer: the candidate it would install and every version they hold."""

    candidate: str | None = None
    versions: tuple[str, ...] = ()


@dataclass(frozen=True)
class Decision:
    """The one change to make. `version` is what to install; `refresh` says the package lists do not hold
    it, so apt-get update must run first (and the decision be made again)."""

    verb: Verb
    diff: str = ""
    version: str | None = None
    refresh: bool = False

    @property
    def action(self) -> Action:
        """Plan's action: installing a package that is not there creates it; anything else updates it."""
        if self.verb == "none":
            return "none"
        return "create" if self.verb == "install" else "update"


def parse_dpkg_query(stdout: str) -> Installed:
    """`dpkg-query -W -f '${db:Status-Status}\\t${Version}\\n' NAME`; empty when dpkg never knew it."""
    line = stdout.strip().splitlines()[0] if stdout.strip() else ""
    status, _, version = line.partition("\t")
    if not status:
        return Installed()
    return Installed(status=status, version=version or None)


def parse_policy(stdout: str) -> Available:
    """`apt-cache policy NAME`: the `Candidate:` line and the versions of the version table, which lists
    the installed one too (from /var/lib/dpkg/status). Empty output: apt does not know the package."""
    candidate: str | None = None
    versions: list[str] = []
    for line in stdout.splitlines():
        if found := _CANDIDATE.match(line):
            candidate = None if found.group(1) == "(none)" else found.group(1)
        elif found := _POLICY_VERSION.match(line):
            versions.append(found.group(1))
    return Available(candidate=candidate, versions=tuple(versions))


def parse_removals(stdout: str) -> list[str]:
    """The packages an `apt-get -s remove` would remove (its `Remv NAME [...]` lines)."""
    return [found.group(1) for line in stdout.splitlines() if (found := _REMOVED.match(line))]


def decide(
    state: State, version: str | None, installed: Installed, available: Available, *, purge: bool = False
) -> Decision:
    """What to do so that the package is in `state` (at `version`, when given, for `present`)."""
    if state == "absent":
        return _absent(installed, purge)
    wanted = version if state == "present" and version is not None else available.candidate
    if installed.working and installed.version is not None:
        if state == "present" and (version is None or version == installed.version):
            return Decision("none")
        if state == "latest" and (wanted is None or compare(installed.version, wanted) >= 0):
            return Decision("none")
    if wanted is None:
        return Decision("install", "not installed -> the candidate of the package lists", refresh=True)
    refresh = wanted not in available.versions
    if installed.working and installed.version is not None:
        verb: Verb = "upgrade" if compare(wanted, installed.version) > 0 else "downgrade"
        return Decision(verb, f"{installed.version} -> {wanted}", wanted, refresh)
    if installed.present:
        before = f"{installed.version or 'unknown version'} ({installed.status})"
        return Decision("repair", f"{before} -> {wanted}", wanted, refresh)
    return Decision("install", f"not installed -> {wanted}", wanted, refresh)


def _absent(installed: Installed, purge: bool) -> Decision:
    verb: Verb = "purge" if purge else "remove"
    after = "purged" if purge else "absent"
    if installed.present:
        return Decision(verb, f"{installed.version or installed.status} -> {after}")
    if purge and installed.status == "config-files":
        return Decision("purge", "configuration files -> purged")
    return Decision("none")
