"""The `package` kind against the host's real apt and dpkg, with packages built for the test and served
from a local repository (tests.aptrepo): in-process through workflows.testing, then through a real agent."""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.aptrepo import AptRepo, installed_version, purge, require_apt_as_root, unique_package
from tests.integration.conftest import Cluster, desired_state
from workflows.kinds.package import OPTIONS_ENV
from workflows.registry import StepError
from workflows.testing import run_resource

DPKG_FRONTEND_LOCK = "/var/lib/dpkg/lock-frontend"


@pytest.fixture
def repo(tmp_path: Path) -> AptRepo:
    require_apt_as_root()
    return AptRepo(tmp_path / "repo")


@pytest.fixture
def package(repo: AptRepo, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A package at 1.0 and 2.0 in the repository, purged from the host after the test whatever happened;
    the provider's apt sees only the repository."""
    name = unique_package()
    repo.add(name, "1.0")
    repo.add(name, "2.0")
    monkeypatch.setenv(OPTIONS_ENV, repo.options)
    yield name
    purge(name)


def test_a_pinned_package_is_installed_then_left_alone_then_upgraded_then_removed(package: str) -> None:
    installed, _ = run_resource("package", {"name": package, "version": "1.0"})
    again, _ = run_resource("package", {"name": package, "version": "1.0"})
    assert (installed.changed, installed.change.action, installed.change.diff) == (
        True,
        "create",
        "not installed -> 1.0",
    )
    assert installed_version(package) == "1.0"
    assert (again.changed, again.change.action) == (False, "none")

    upgraded, ctx = run_resource("package", {"name": package, "version": "2.0"})
    assert (upgraded.changed, upgraded.change.diff) == (True, "1.0 -> 2.0")
    assert installed_version(package) == "2.0"
    assert ctx.captured is not None and ctx.captured["lines"], "apt-get's output is kept for the step"
    assert run_resource("package", {"name": package, "state": "latest"})[0].changed is False

    downgraded, _ = run_resource("package", {"name": package, "version": "1.0"})
    assert (downgraded.changed, downgraded.change.diff) == (True, "2.0 -> 1.0")

    removed, _ = run_resource("package", {"name": package, "state": "absent"})
    assert (removed.changed, removed.change.diff) == (True, "1.0 -> absent")
    assert installed_version(package) is None
    assert run_resource("package", {"name": package, "state": "absent"})[0].changed is False


def test_latest_installs_the_newest_listed_version(package: str, repo: AptRepo) -> None:
    repo.refresh()

    outcome, _ = run_resource("package", {"name": package, "state": "latest"})

    assert (outcome.changed, outcome.change.diff) == (True, "not installed -> 2.0")
    assert installed_version(package) == "2.0"


def test_a_package_the_lists_do_not_hold_yet_is_installed_after_apt_get_update(package: str) -> None:
    outcome, ctx = run_resource("package", {"name": package, "state": "latest"})

    assert outcome.changed is True
    assert outcome.change.diff.endswith("(apt-get update runs first)")
    assert (None, "apt-get update") in ctx.reports
    assert installed_version(package) == "2.0"


def test_a_check_changes_nothing(package: str, repo: AptRepo) -> None:
    repo.refresh()

    planned, _ = run_resource("package", {"name": package}, mode="check")

    assert (planned.change.action, planned.change.diff) == ("create", "not installed -> 2.0")
    assert installed_version(package) is None


def test_a_package_unknown_to_apt_fails_for_good_naming_it(package: str) -> None:
    with pytest.raises(StepError, match=r"converge-test-nosuch is unknown to apt") as raised:
        run_resource("package", {"name": "converge-test-nosuch"})
    assert raised.value.retryable is False


def test_a_version_not_in_the_lists_fails_for_good_listing_those_there(package: str) -> None:
    with pytest.raises(StepError, match=r"version 3\.0 of .* \(they offer: 2\.0, 1\.0\)") as raised:
        run_resource("package", {"name": package, "version": "3.0"})
    assert raised.value.retryable is False


def test_a_held_dpkg_lock_fails_the_step_so_that_it_is_retried(package: str, repo: AptRepo) -> None:
    repo.refresh()
    fd = os.open(DPKG_FRONTEND_LOCK, os.O_RDWR | os.O_CREAT, 0o640)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(StepError, match="the dpkg lock is held by another process") as raised:
            run_resource("package", {"name": package})
    finally:
        os.close(fd)
    assert raised.value.retryable is True
    assert installed_version(package) is None


def test_a_removal_that_would_take_a_dependent_with_it_is_refused(package: str, repo: AptRepo) -> None:
    dependent = unique_package()
    repo.add(dependent, "1.0", depends=package)
    try:
        run_resource("package", {"name": dependent})
        with pytest.raises(StepError, match=f"would also remove {dependent}") as raised:
            run_resource("package", {"name": package, "state": "absent"})
        assert raised.value.retryable is False
        assert installed_version(package) is not None
    finally:
        purge(dependent)


def test_an_agent_converges_a_package_and_a_rerun_changes_nothing(cluster: Cluster, repo: AptRepo) -> None:
    name = unique_package()
    repo.add(name, "1.0")
    repo.add(name, "2.0")
    cluster.env[OPTIONS_ENV] = repo.options
    cluster.start_agent("pkg", agent_id="pkg-1")

    def estate(spec: str) -> Path:
        resources = f"  - {{kind: package, name: probe, role: pkg, spec: {spec}}}\n"
        return cluster.write("packages.yaml", desired_state("packages", resources))

    try:
        pinned = estate(f"{{name: {name}, version: '1.0'}}")
        first = cluster.apply(pinned)
        assert first["exit_code"] == 0, first
        assert first["workflow"]["steps"][0]["changed"] is True
        assert installed_version(name) == "1.0"
        second = cluster.apply(pinned)
        assert second["workflow"]["steps"][0]["changed"] is False

        upgrade = estate(f"{{name: {name}, version: '2.0'}}")
        planned = json.loads(cluster.cli("plan", str(upgrade), "--json").stdout)["changes"]
        assert [(c["action"], c["diff"]) for c in planned] == [("update", "1.0 -> 2.0")]
        assert cluster.apply(upgrade)["workflow"]["steps"][0]["changed"] is True
        assert installed_version(name) == "2.0"

        removed = cluster.apply(estate(f"{{name: {name}, state: absent}}"))
        assert removed["workflow"]["steps"][0]["changed"] is True
        assert installed_version(name) is None
    finally:
        purge(name)
