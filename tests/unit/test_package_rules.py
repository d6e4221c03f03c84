"""The `package` kind's decisions, apart from apt: Debian version order, the tools' output read, what to do."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from workflows.kinds import package as package_kind
from workflows.kinds._run import Ran
from workflows.kinds.debversion import compare
from workflows.kinds.package import PackageSpec, apt_options
from workflows.kinds.package_rules import (
    Available,
    Installed,
    decide,
    parse_dpkg_query,
    parse_policy,
    parse_removals,
)
from workflows.registry import StepError

V1 = Installed("installed", "1.0")
BOTH = Available("2.0", ("2.0", "1.0"))


@pytest.mark.parametrize(
    ("older", "newer"),
    [
        ("1.0", "2.0"),
        ("1.0~rc1", "1.0"),
        ("2.0", "1:0.1"),
        ("1.0-1", "1.0-1+b1"),
        ("2.9", "2.10"),
        ("1.0", "1.0.0"),
        ("1.0~~", "1.0~"),
        ("1.0a", "1.0+"),
        ("5.2.15-2+b8", "5.2.15-2+b13"),
    ],
)
def test_debian_versions_order_as_dpkg_orders_them(older: str, newer: str) -> None:
    assert compare(older, newer) < 0
    assert compare(newer, older) > 0


def test_versions_that_differ_only_in_a_zero_epoch_or_revision_are_equal() -> None:
    assert compare("0:1.0", "1.0") == 0
    assert compare("1.0-0", "1.0") == 0


def test_dpkg_query_output_reads_as_state_and_version() -> None:
    assert parse_dpkg_query("installed\t1.0\n") == Installed("installed", "1.0")
    assert parse_dpkg_query("config-files\t1.0\n") == Installed("config-files", "1.0")
    assert parse_dpkg_query("") == Installed("not-installed", None)


def test_apt_cache_policy_gives_the_candidate_and_every_listed_version() -> None:
    policy = (
        "converge-test:\n  Installed: 1.0\n  Candidate: 2.0\n  Version table:\n     2.0 500\n"
        "        500 file:/srv/repo ./ Packages\n *** 1.0 500\n        500 file:/srv/repo ./ Packages\n"
        "        100 /var/lib/dpkg/status\n"
    )
    assert parse_policy(policy) == Available("2.0", ("2.0", "1.0"))
    assert parse_policy("") == Available(None, ())
    assert parse_policy("x:\n  Installed: (none)\n  Candidate: (none)\n  Version table:\n").candidate is None


def test_a_simulated_removal_lists_what_it_would_remove() -> None:
    simulated = "Remv converge-b [1.0]\nRemv converge-a [1.0]\n"
    assert parse_removals(simulated) == ["converge-b", "converge-a"]


def test_a_package_at_the_pinned_version_is_left_alone() -> None:
    assert decide("present", "1.0", V1, BOTH).verb == "none"
    assert decide("present", None, V1, BOTH).verb == "none"


def test_a_missing_package_is_installed_at_the_candidate_or_the_pinned_version() -> None:
    plain = decide("present", None, Installed(), BOTH)
    pinned = decide("present", "1.0", Installed(), BOTH)

    assert (plain.verb, plain.version, plain.diff, plain.action) == (
        "install",
        "2.0",
        "not installed -> 2.0",
        "create",
    )
    assert (pinned.version, pinned.refresh) == ("1.0", False)


def test_a_pin_to_another_version_upgrades_or_downgrades_with_a_diff() -> None:
    up = decide("present", "2.0", V1, BOTH)
    down = decide("present", "1.0", Installed("installed", "2.0"), BOTH)

    assert (up.verb, up.diff, up.action) == ("upgrade", "1.0 -> 2.0", "update")
    assert (down.verb, down.diff) == ("downgrade", "2.0 -> 1.0")


def test_latest_upgrades_only_to_a_newer_candidate() -> None:
    assert decide("latest", None, V1, BOTH).diff == "1.0 -> 2.0"
    assert decide("latest", None, Installed("installed", "2.0"), BOTH).verb == "none"
    assert decide("latest", None, Installed("installed", "3.0"), BOTH).verb == "none"  # built locally
    assert decide("latest", None, V1, Available()).verb == "none"  # in no list: nothing newer


def test_what_the_lists_lack_asks_for_a_refresh_first() -> None:
    unknown = decide("present", None, Installed(), Available())
    unlisted = decide("present", "3.0", V1, BOTH)

    assert (unknown.verb, unknown.version, unknown.refresh) == ("install", None, True)
    assert (unlisted.verb, unlisted.version, unlisted.refresh) == ("upgrade", "3.0", True)


def test_a_half_installed_package_is_repaired() -> None:
    broken = decide("present", None, Installed("half-configured", "1.0"), BOTH)

    assert (broken.verb, broken.diff) == ("repair", "1.0 (half-configured) -> 2.0")


def test_absent_removes_or_purges_and_leaves_a_removed_package_alone() -> None:
    assert decide("absent", None, V1, Available()).diff == "1.0 -> absent"
    assert decide("absent", None, V1, Available(), purge=True).diff == "1.0 -> purged"
    assert decide("absent", None, Installed("config-files", "1.0"), Available()).verb == "none"
    leftover = decide("absent", None, Installed("config-files", "1.0"), Available(), purge=True)
    assert (leftover.verb, leftover.action) == ("purge", "update")
    assert decide("absent", None, Installed(), Available()).verb == "none"


def test_a_spec_refuses_fields_its_state_gives_no_meaning() -> None:
    with pytest.raises(ValidationError, match="needs state present"):
        PackageSpec.model_validate({"name": "nginx", "state": "latest", "version": "1.0"})
    with pytest.raises(ValidationError, match="needs state absent"):
        PackageSpec.model_validate({"name": "nginx", "purge": True})
    with pytest.raises(ValidationError, match="name"):
        PackageSpec.model_validate({"name": "Nginx; rm -rf /"})
    with pytest.raises(ValidationError, match="version"):
        PackageSpec.model_validate({"name": "nginx", "version": "1.0 --allow-unauthenticated"})


def test_apt_options_come_from_the_agents_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVERGE_APT_OPTIONS", "-o Dir::Etc::SourceList=/srv/a.list -o 'A::B=c d'")
    assert apt_options()[-4:] == ["-o", "Dir::Etc::SourceList=/srv/a.list", "-o", "A::B=c d"]

    monkeypatch.setenv("CONVERGE_APT_OPTIONS", "-o 'unclosed")
    with pytest.raises(StepError, match="CONVERGE_APT_OPTIONS cannot be read") as raised:
        apt_options()
    assert raised.value.retryable is False


def apt_failed(stderr: str) -> StepError:
    with pytest.raises(StepError) as raised:
        package_kind._checked(Ran(("apt-get", "install"), 100, "", stderr), "install nginx")
    return raised.value


def test_a_held_dpkg_lock_is_retryable_and_what_apt_refused_is_not() -> None:
    locked = apt_failed("E: Could not get lock /var/lib/dpkg/lock-frontend. It is held by process 42 (apt)")
    unknown = apt_failed("E: Unable to locate package nginx")
    interrupted = apt_failed("E: dpkg was interrupted, you must manually run 'dpkg --configure -a'")
    mirror = apt_failed("E: Failed to fetch http://deb.example/pool/nginx.deb  Connection refused")

    assert locked.retryable is True and "the dpkg lock is held by another process" in str(locked)
    assert unknown.retryable is False and "apt-get exited with code 100" in str(unknown)
    assert interrupted.retryable is False and "dpkg --configure -a" in str(interrupted)
    assert mirror.retryable is True
