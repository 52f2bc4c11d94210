"""
User-facing text in Chinese and English: gettext catalogues under `collect/locale/`, read with
Babel once at startup. Identifiers stay English; `zh-CN` is the default language.

Choosing a language: `?lang=en|zh-CN` (remembered in a cookie), else the cookie, else the
default (the campaign's language on ballot pages, COLLECT_LANG in the console).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Final

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations
from starlette.requests import Request

LANGS: Final = ("zh-CN", "en")
LANG_COOKIE: Final = "collect_lang"
LOCALE_DIR: Final = Path(__file__).resolve().parent.parent / "locale"
_CATALOGUE_DIRS: Final = {"zh-CN": "zh_CN", "en": "en"}


def N_(message: str) -> str:
    """Marks a message for extraction where it is defined; it is translated where it is shown."""
    return message


def load_translations(locale_dir: Path = LOCALE_DIR) -> dict[str, Translations]:
    """Every catalogue, compiled in memory (no .mo files to build or forget to ship)."""
    out: dict[str, Translations] = {}
    for lang, directory in _CATALOGUE_DIRS.items():
        path = locale_dir / directory / "LC_MESSAGES" / "messages.po"
        with path.open("rb") as handle:
            catalog = read_po(handle, locale=directory)
        buffer = io.BytesIO()
        write_mo(buffer, catalog)
        buffer.seek(0)
        out[lang] = Translations(fp=buffer)
    return out


def chosen_lang(request: Request, default: str) -> tuple[str, bool]:
    """The page's language, and whether it was chosen just now (so the cookie is to be set)."""
    asked = request.query_params.get("lang")
    if asked in LANGS:
        return asked, True
    remembered = request.cookies.get(LANG_COOKIE)
    if remembered in LANGS:
        return remembered, False
    return (default if default in LANGS else LANGS[0]), False


# Codes shown through `_()` in templates, listed here so extraction finds them.
SHOWN_CODES = (
    N_("counted"),
    N_("superseded"),
    N_("duplicate"),
    N_("invalid"),
    N_("pending_review"),
    N_("accepted"),
    N_("rejected"),
    N_("conflict"),
    N_("web"),
    N_("window_qr"),
    N_("sms"),
    N_("phone"),
    N_("paper"),
    N_("api"),
    N_("admin"),
    N_("operator"),
    N_("clerk"),
    N_("viewer"),
)
