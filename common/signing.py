"""Signatures: Ed25519 over the steps the engine sends (agents run only those), and each agent's MAC over
the status events it writes (the engine records only those of the agent that holds the attempt).

What is signed is the document's canonical form: its JSON with sorted keys and no spaces, without the
`sig` field that carries the signature (base64). A document that was changed, re-encoded differently, or
signed by another key does not verify. Replay of a whole, valid message is not refused here: each step
attempt can be claimed once (agents.reporter), so a replayed delivery is dropped there.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path
from typing import Any

import nacl.bindings
import nacl.exceptions
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

SIG = "sig"
MAC_KEY_BYTES = 32


def canonical(document: dict[str, Any]) -> bytes:
    """The bytes a signature covers: the document without its signature, as canonical JSON."""
    unsigned = {key: value for key, value in document.items() if key != SIG}
    return json.dumps(unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


# Keys are kept as cryptography's objects (PEM files, certificates); signing and verifying a step, once per
# step on each side, go through libsodium, which does the same Ed25519 in half the time. Its form of each
# key is made once per key object (held here, so that its id is not reused).
_SODIUM: dict[int, tuple[Ed25519PrivateKey | Ed25519PublicKey, bytes]] = {}


def _sodium(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    """libsodium's form of a key: the 64-byte secret key (seed and public key), or the 32-byte public key."""
    held = _SODIUM.get(id(key))
    if held is None or held[0] is not key:
        if isinstance(key, Ed25519PrivateKey):
            raw = key.private_bytes_raw() + key.public_key().public_bytes_raw()
        else:
            raw = key.public_bytes_raw()
        held = _SODIUM[id(key)] = (key, raw)
    return held[1]


def sign(key: Ed25519PrivateKey, document: dict[str, Any]) -> dict[str, Any]:
    """The document with its signature in `sig`."""
    data = canonical(document)
    signature = nacl.bindings.crypto_sign(data, _sodium(key))[: nacl.bindings.crypto_sign_BYTES]
    return {**document, SIG: base64.b64encode(signature).decode()}


def verify(key: Ed25519PublicKey, document: dict[str, Any]) -> str | None:
    """None if the document carries a valid signature by `key`; else what is wrong with it."""
    signature = document.get(SIG)
    if not isinstance(signature, str):
        return "it is not signed"
    try:
        raw = base64.b64decode(signature, validate=True)
        if len(raw) != nacl.bindings.crypto_sign_BYTES:
            raise ValueError("not an Ed25519 signature")
        nacl.bindings.crypto_sign_open(raw + canonical(document), _sodium(key))
    except (nacl.exceptions.BadSignatureError, binascii.Error, ValueError):
        return "its signature does not verify against the engine's key"
    return None


def load_or_create(path: Path) -> Ed25519PrivateKey:
    """The private key kept at `path` (PEM, readable by its owner only), made on first use."""
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path} does not hold an Ed25519 private key")
        return key
    key = Ed25519PrivateKey.generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    return key


def public_pem(key: Ed25519PrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def load_public(pem: str | bytes) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(pem.encode() if isinstance(pem, str) else pem)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return key


# -- status events ---------------------------------------------------------------------------------------
#
# An agent's status events carry an HMAC-SHA256 of their exact bytes, with a key of the agent's own: issued
# by the engine at admission, or made by a trusted agent and kept where only the engine reads it. Only the
# agent and the engine hold the key, so an event that verifies was written by that agent; another agent,
# or anything else that can write to the stream, cannot make one. A MAC, not a signature: the engine is the
# only verifier, and an Ed25519 verification costs about 75 us here, against 2 us, on each of the two or
# more events of every step.


def new_mac_key() -> bytes:
    return secrets.token_bytes(MAC_KEY_BYTES)


def mac(key: bytes, data: bytes) -> str:
    """The MAC of `data` with `key`, in base64."""
    return base64.b64encode(hmac.digest(key, data, hashlib.sha256)).decode()


def mac_verifies(key: bytes, data: bytes, tag: bytes | str | None) -> bool:
    """Whether `tag` is the MAC of `data` with `key` (compared in constant time)."""
    if not tag:
        return False
    expected = mac(key, data).encode()
    return hmac.compare_digest(expected, tag.encode() if isinstance(tag, str) else tag)


def derive_key(secret: bytes, *parts: str) -> bytes:
    """A key for one purpose and holder, from the engine's secret: the same parts give the same key."""
    return hmac.digest(secret, "\0".join(parts).encode(), hashlib.sha256)


def load_or_create_secret(path: Path) -> bytes:
    """MAC_KEY_BYTES random bytes kept at `path` (readable by its owner only), made on first use."""
    if path.exists():
        secret = path.read_bytes()
        if len(secret) != MAC_KEY_BYTES:
            raise ValueError(f"{path} does not hold a {MAC_KEY_BYTES}-byte key: delete it to make a new one")
        return secret
    secret = new_mac_key()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # made by another process just now
        return load_or_create_secret(path)
    with os.fdopen(fd, "wb") as f:
        f.write(secret)
    return secret
