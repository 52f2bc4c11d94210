"""
Keyed hashes: how a person becomes a respondent key without the store keeping who they are.

HMAC-SHA256 with COLLECT_SECRET_KEY, scoped by campaign, so keys cannot be reversed by hashing
every phone number, and one person is not linkable across campaigns.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

# Crockford's base32 without I, L, O, U: a receipt read aloud on the phone is not misheard.
_RECEIPT_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def keyed_hash(secret: bytes, campaign: str, kind: str, value: str) -> str:
    message = f"{campaign}\x1f{kind}\x1f{value}".encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def token_for(secret: bytes, nonce: str) -> str:
    """A ballot-link token, derived from a stored nonce so a link can be printed again."""
    digest = hmac.new(secret, f"ballot-token\x1f{nonce}".encode(), hashlib.sha256).digest()
    return _b32(digest[:15])


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def new_nonce() -> str:
    return secrets.token_hex(16)


def new_receipt() -> str:
    """Ten characters (50 bits): e.g. `K7Q2X-9XMAB`, shown and quoted with a dash."""
    raw = "".join(secrets.choice(_RECEIPT_ALPHABET) for _ in range(10))
    return f"{raw[:5]}-{raw[5:]}"


# One random byte per character: 256 is a multiple of 32, so `byte & 31` is uniform.
_RECEIPT_TABLE = bytes(ord(_RECEIPT_ALPHABET[b & 31]) for b in range(256))


def new_receipts(count: int) -> list[str]:
    """
    `count` receipts as new_receipt() makes them, from one call to the CSPRNG: a bulk import
    needs thousands at once, and secrets.choice per character costs more than the insert.
    """
    raw = secrets.token_bytes(10 * count).translate(_RECEIPT_TABLE).decode("ascii")
    return [f"{raw[i : i + 5]}-{raw[i + 5 : i + 10]}" for i in range(0, 10 * count, 10)]


def _b32(data: bytes) -> str:
    number = int.from_bytes(data, "big")
    out = []
    for _ in range(len(data) * 8 // 5):
        number, index = divmod(number, 32)
        out.append(_RECEIPT_ALPHABET[index].lower())
    return "".join(reversed(out))
