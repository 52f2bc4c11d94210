"""Phone numbers: one normal form (E.164) so `138 0013 8000`, `+86-138…` and `0086…` are one person."""

from __future__ import annotations

import phonenumbers

# Full-width digits and punctuation arrive from Chinese keyboards and spreadsheets.
_FULL_WIDTH = str.maketrans("０１２３４５６７８９＋－（）　", "0123456789+-() ")


def normalise_phone(text: str, region: str = "CN") -> str | None:
    """E.164 for a valid number, None for anything else (never raises)."""
    cleaned = text.translate(_FULL_WIDTH).strip()
    if cleaned.startswith("00"):
        cleaned = "+" + cleaned[2:]
    try:
        number = phonenumbers.parse(cleaned, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def mask_phone(e164: str) -> str:
    """For operator screens: +86 138****8000."""
    return f"{e164[:6]}****{e164[-4:]}" if len(e164) > 10 else "****"
