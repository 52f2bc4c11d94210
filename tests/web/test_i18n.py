"""Every text the web shows has its Chinese; both catalogues know the same texts."""

from __future__ import annotations

import re
from pathlib import Path

from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from collect.web.i18n import LOCALE_DIR, load_translations

WEB = Path(__file__).resolve().parents[2] / "collect" / "web"
METHODS = [("**/templates/**.html", "jinja2"), ("**.py", "python")]
OPTIONS = {
    "**/templates/**.html": {"extensions": "jinja2.ext.i18n", "trim_blocks": "true", "lstrip_blocks": "true"}
}


def used() -> set[str]:
    found = set()
    for _file, _line, message, _comments, _context in extract_from_dir(
        str(WEB), METHODS, options_map=OPTIONS
    ):
        found.add(message if isinstance(message, str) else message[0])
    return found


def catalogue(lang: str) -> dict[str, str]:
    with (LOCALE_DIR / lang / "LC_MESSAGES" / "messages.po").open("rb") as handle:
        return {str(m.id): str(m.string) for m in read_po(handle) if m.id}


def test_every_shown_text_has_a_chinese_translation() -> None:
    zh = catalogue("zh_CN")
    messages = used()
    assert len(messages) > 50
    missing = sorted(m for m in messages if not zh.get(m))
    assert missing == []


def test_the_catalogues_agree_and_keep_their_placeholders() -> None:
    zh, en = catalogue("zh_CN"), catalogue("en")
    assert set(zh) == set(en)
    for message, text in zh.items():
        assert sorted(re.findall(r"%\(\w+\)s", message)) == sorted(re.findall(r"%\(\w+\)s", text)), message


def test_catalogues_load() -> None:
    translations = load_translations()
    assert translations["zh-CN"].gettext("Submit") == "提交"
    assert translations["en"].gettext("Submit") == "Submit"
