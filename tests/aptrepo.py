"""A local apt repository in a folder, with tiny packages built by dpkg-deb, for the `package` kind's tests.

The repository's `file:` source lives in a sources.list of its own, and apt's lists and cache in the folder
too (`options`, given to the agent as CONVERGE_APT_OPTIONS): the host's sources and lists are left alone.
Only dpkg's database is the host's own, since the packages really are installed.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

TOOLS = ("dpkg-deb", "dpkg-scanpackages", "apt-get", "dpkg-query")


def require_apt_as_root() -> None:
    """Skip the calling test unless this host is Debian-like, has dpkg-dev, and the test runs as root."""
    import os

    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (apt-get install dpkg-dev)")
    if os.geteuid() != 0:
        pytest.skip("installs packages: needs root")


def unique_package() -> str:
    return f"converge-test-{uuid.uuid4().hex[:8]}"


class AptRepo:
    """A flat repository (`deb [trusted=yes] file:DIR ./`) that versions of packages are added to."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.pool = root / "pool"
        self.pool.mkdir(parents=True)
        for folder in ("lists/partial", "cache/archives/partial"):
            (root / folder).mkdir(parents=True)
        self.sources = root / "sources.list"
        self.sources.write_text(f"deb [trusted=yes] file:{self.pool} ./\n")
        self.index()

    @property
    def options(self) -> str:
        """Shell words for CONVERGE_APT_OPTIONS: only this repository, with lists and cache of its own;
        no waiting on a held dpkg lock."""
        return " ".join(
            [
                f"-o Dir::Etc::SourceList={self.sources}",
                "-o Dir::Etc::SourceParts=-",
                f"-o Dir::State::Lists={self.root / 'lists'}",
                f"-o Dir::Cache={self.root / 'cache'}",
                "-o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache=",
                "-o DPkg::Lock::Timeout=0",
            ]
        )

    def add(self, name: str, version: str, *, depends: str | None = None) -> Path:
        """Build `name` at `version` (one file under /usr/share/doc/NAME) into the pool, and re-index."""
        build = self.root / "build" / f"{name}-{version}"
        (build / "DEBIAN").mkdir(parents=True)
        doc = build / "usr" / "share" / "doc" / name
        doc.mkdir(parents=True)
        (doc / "VERSION").write_text(f"{version}\n")
        control = [
            f"Package: {name}",
            f"Version: {version}",
            "Architecture: all",
            "Maintainer: Converge tests <tests@converge.invalid>",
            f"Description: a package the Converge tests install and remove ({version})",
        ]
        if depends:
            control.append(f"Depends: {depends}")
        (build / "DEBIAN" / "control").write_text("\n".join(control) + "\n")
        deb = self.pool / f"{name}_{version}_all.deb"
        subprocess.run(
            ["dpkg-deb", "--build", "--root-owner-group", str(build), str(deb)],
            check=True,
            capture_output=True,
        )
        self.index()
        return deb

    def index(self) -> None:
        scanned = subprocess.run(
            ["dpkg-scanpackages", "--multiversion", "."], cwd=self.pool, check=True, capture_output=True
        )
        (self.pool / "Packages").write_bytes(scanned.stdout)

    def refresh(self) -> None:
        """apt-get update of this repository's own lists, as a host whose lists are up to date."""
        subprocess.run(["apt-get", *self.options.split(), "update"], check=True, capture_output=True)


def installed_version(name: str) -> str | None:
    ran = subprocess.run(
        ["dpkg-query", "-W", "-f", "${db:Status-Status} ${Version}", name], capture_output=True, text=True
    )
    status, _, version = ran.stdout.partition(" ")
    return version if ran.returncode == 0 and status == "installed" else None


def purge(*names: str) -> None:
    """Remove what a test installed, whatever state it left it in."""
    subprocess.run(["dpkg", "--purge", *names], capture_output=True, check=False)
