"""The vault alone: its key file, encryption at rest, and the rules that decide who may have a credential."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest

from common.errors import BadInput
from common.store import open_store
from common.store.interface import StepHolder
from engine import vault
from engine.vault_rules import CredentialRequest, refusal, starting

SECRET = "s3cr3t-Value"


def running(**changes: Any) -> StepHolder:
    step = StepHolder(
        id="wf-1", state="started", agent="web-01", attempt=2, epoch=3, credentials=["db-password"]
    )
    return step._replace(**changes)


def asking(**changes: object) -> CredentialRequest:
    fields: dict[str, object] = {"name": "db-password", "step_id": "wf-1", "attempt": 2, "epoch": 3}
    return CredentialRequest.model_validate(fields | changes)


def test_a_value_round_trips_and_its_ciphertext_does_not_hold_it(tmp_path: Path) -> None:
    box = vault.Vault.at(tmp_path / "keys" / "vault.key")

    sealed = box.seal(SECRET)

    assert SECRET not in sealed
    assert box.open(sealed, "db-password") == SECRET


def test_the_key_is_made_once_readable_by_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "vault.key"

    first = vault.load_or_create_key(path)

    assert vault.load_or_create_key(path) == first
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["vault.key"]


def test_another_key_fails_clearly_and_shows_no_value(tmp_path: Path) -> None:
    sealed = vault.Vault.at(tmp_path / "one.key").seal(SECRET)

    with pytest.raises(vault.VaultError) as caught:
        vault.Vault.at(tmp_path / "other.key").open(sealed, "db-password")

    assert "does not open credential 'db-password'" in str(caught.value)
    assert SECRET not in str(caught.value)


def test_a_file_that_holds_no_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "vault.key"
    path.write_text("not a key")

    with pytest.raises(vault.VaultError, match="holds no vault key"):
        vault.Vault.at(path)


def test_the_store_keeps_only_ciphertext_and_refuses_an_empty_value_or_a_bad_name(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'converge.db'}")
    box = vault.Vault.at(tmp_path / "vault.key")
    try:
        assert vault.put(store, box, "db-password", SECRET) is True
        assert vault.put(store, box, "db-password", SECRET + "2") is False
        with pytest.raises(BadInput):
            vault.put(store, box, "empty", "")
        with pytest.raises(BadInput):
            vault.put(store, box, "../etc", SECRET)

        ciphertext = store.credential_ciphertext("db-password")
        assert ciphertext is not None and SECRET not in ciphertext
        assert box.open(ciphertext, "db-password") == SECRET + "2"
        assert [r.name for r in store.credential_records()] == ["db-password"]
    finally:
        store.close()
    assert SECRET.encode() not in (tmp_path / "converge.db").read_bytes()


def test_the_agent_running_the_step_gets_a_listed_credential() -> None:
    assert refusal(running(), asking(), "web-01") is None


def test_a_step_pinned_to_one_agent_is_not_fenced_by_an_epoch() -> None:
    assert refusal(running(epoch=0), asking(epoch=0), "web-01") is None


@pytest.mark.parametrize(
    ("step", "request_", "agent", "reason"),
    [
        (None, asking(), "web-01", "no step wf-1"),
        (running(state="succeeded"), asking(), "web-01", "is succeeded, not started"),
        (running(state="queued"), asking(), "web-01", "is queued, not started"),
        (running(), asking(), "web-02", "not running on agent web-02"),
        (running(), asking(attempt=1), "web-01", "attempt 1 of step wf-1 is not its current attempt (2)"),
        (running(), asking(epoch=2), "web-01", "epoch 2 is not the epoch step wf-1 runs under (3)"),
        (running(), asking(name="root-password"), "web-01", "'root-password' is not in the `credentials`"),
    ],
)
def test_each_failed_check_is_named(
    step: StepHolder | None, request_: CredentialRequest, agent: str, reason: str
) -> None:
    found = refusal(step, request_, agent)

    assert found is not None and reason in found


def test_only_a_queued_step_of_the_same_attempt_is_worth_waiting_for() -> None:
    assert starting(running(state="queued", agent=None), asking())
    assert not starting(running(state="queued", agent=None), asking(attempt=1))
    assert not starting(running(), asking())
    assert not starting(None, asking())
