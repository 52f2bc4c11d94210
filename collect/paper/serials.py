"""
Form serials: `P-8F3K2-Q7` (six random symbols and a check symbol) plus a four-symbol signature.

The alphabet is Crockford's base32 (no I, L, O, U), so a serial read aloud or keyed by hand is
not misread; the check symbol (Luhn mod 32) catches every single wrong symbol and all adjacent
transpositions but one (0↔Z), before the ledger is asked. The signature is an HMAC of the serial
with COLLECT_SECRET_KEY, scoped by campaign: nobody without the key can invent a serial that
verifies, and changing the key makes every printed form unverifiable.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_INDEX = {c: i for i, c in enumerate(ALPHABET)}
# What people type for the symbols Crockford leaves out (its decoding rules).
_READ_AS = str.maketrans({"O": "0", "I": "1", "L": "1"})
PREFIX = "P"
BODY = 6  # random symbols: 32**6 ≈ 1.07e9 serials per campaign
SIGNATURE = 4  # 20 bits: a guessed signature verifies one time in a million
QR_VERSION = "CP1"


class SerialFormatError(ValueError):
    """Text that is not a serial at all (wrong length or symbols)."""


def check_symbol(body: str) -> str:
    """The Luhn mod 32 check symbol of `body` (symbols of ALPHABET)."""
    total = 0
    factor = 2
    for symbol in reversed(body):
        addend = factor * _INDEX[symbol]
        # Mod-N Luhn: fold the doubled value back into one symbol (a permutation for even N).
        total += addend // 32 + addend % 32
        factor = 1 if factor == 2 else 2
    return ALPHABET[(32 - total % 32) % 32]


def format_serial(code: str) -> str:
    """`8F3K2Q7` → `P-8F3K2-Q7`: the printed and stored form."""
    return f"{PREFIX}-{code[:5]}-{code[5:]}"


def new_serial() -> str:
    body = "".join(secrets.choice(ALPHABET) for _ in range(BODY))
    return format_serial(body + check_symbol(body))


def normalise(text: str) -> str:
    """
    The seven symbols of a serial as typed: case, spaces, dashes and the `P-` prefix do not
    matter, O/I/L read as 0/1.

    Raises:
        SerialFormatError: not seven symbols of the alphabet.
    """
    compact = re.sub(r"[\s\-_.·—]", "", text.upper())
    if compact.startswith(PREFIX) and len(compact) == BODY + 2:
        compact = compact[1:]
    compact = compact.translate(_READ_AS)
    if len(compact) != BODY + 1 or any(c not in _INDEX for c in compact):
        raise SerialFormatError(f"{text!r} is not a serial like P-8F3K2-Q7 (seven symbols after P-)")
    return compact


def canonical(text: str) -> str:
    """The stored form of a typed serial (`p 8f3k2q7` → `P-8F3K2-Q7`). Raises SerialFormatError."""
    return format_serial(normalise(text))


def check_ok(serial: str) -> bool:
    code = normalise(serial)
    return check_symbol(code[:-1]) == code[-1]


def sign(secret: bytes, campaign: str, serial: str) -> str:
    """The printed signature of a serial (four symbols)."""
    digest = hmac.new(secret, f"paper-serial\x1f{campaign}\x1f{serial}".encode(), hashlib.sha256).digest()
    number = int.from_bytes(digest[:4], "big") >> (32 - 5 * SIGNATURE)
    return "".join(ALPHABET[(number >> (5 * (SIGNATURE - 1 - i))) & 31] for i in range(SIGNATURE))


def normalise_signature(text: str) -> str:
    compact = re.sub(r"[\s\-]", "", text.upper()).translate(_READ_AS)
    if len(compact) != SIGNATURE or any(c not in _INDEX for c in compact):
        raise SerialFormatError(f"{text!r} is not a signature (four symbols, e.g. K4M9)")
    return compact


def signature_ok(secret: bytes, campaign: str, serial: str, signature: str) -> bool:
    return hmac.compare_digest(sign(secret, campaign, serial), signature)


def one_off(a: str, b: str) -> bool:
    """True when two equally long strings differ in exactly one symbol or one adjacent swap."""
    if len(a) != len(b) or a == b:
        return False
    diff = [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]
    if len(diff) == 1:
        return True
    return len(diff) == 2 and diff[1] == diff[0] + 1 and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]]


def neighbours(code: str) -> Iterator[str]:
    """
    Every valid serial one typing slip away from `code` (seven symbols): one symbol changed or
    two neighbours swapped. A mistyped serial is one of these' typo; there are at most 13.
    """
    seen: set[str] = set()
    for i in range(len(code)):
        for symbol in ALPHABET:
            if symbol == code[i]:
                continue
            candidate = code[:i] + symbol + code[i + 1 :]
            if check_symbol(candidate[:-1]) == candidate[-1] and candidate not in seen:
                seen.add(candidate)
                yield format_serial(candidate)
    for i in range(len(code) - 1):
        candidate = code[:i] + code[i + 1] + code[i] + code[i + 2 :]
        if candidate != code and check_symbol(candidate[:-1]) == candidate[-1] and candidate not in seen:
            seen.add(candidate)
            yield format_serial(candidate)


@dataclass(frozen=True, slots=True)
class QrPayload:
    """What a form's QR code carries: `CP1/<campaign>/<serial>/<signature>/<page>`."""

    campaign: str
    serial: str
    signature: str
    page: int

    def text(self) -> str:
        return f"{QR_VERSION}/{self.campaign}/{self.serial}/{self.signature}/{self.page}"

    @classmethod
    def parse(cls, text: str) -> QrPayload | None:
        """None for anything that is not one of our form codes (another QR on the page, noise)."""
        parts = text.strip().split("/")
        if len(parts) != 5 or parts[0] != QR_VERSION or not parts[4].isdigit():
            return None
        try:
            serial = canonical(parts[2])
            signature = normalise_signature(parts[3])
        except SerialFormatError:
            return None
        if not check_ok(serial):
            return None
        return cls(parts[1], serial, signature, int(parts[4]))
