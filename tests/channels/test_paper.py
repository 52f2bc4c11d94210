"""Serials (check symbol, signature, typo neighbours, QR payload) and the keyed-row adapter."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collect.ballot import BallotSubmission, Rejection
from collect.channels.paper import (
    KeyedRows,
    PaperAdapter,
    PaperFileError,
    answered_at_for,
    map_columns,
    parse_date,
)
from collect.paper.serials import (
    ALPHABET,
    QrPayload,
    SerialFormatError,
    canonical,
    check_ok,
    check_symbol,
    neighbours,
    new_serial,
    normalise,
    one_off,
    sign,
)
from tests.paper.helpers import ANSWER_HEADERS, spec

body = st.text(alphabet=ALPHABET, min_size=6, max_size=6)


@given(body, st.integers(min_value=0, max_value=6), st.sampled_from(ALPHABET))
def test_every_single_wrong_symbol_breaks_the_check(code: str, position: int, symbol: str) -> None:
    serial = code + check_symbol(code)
    typed = serial[:position] + symbol + serial[position + 1 :]
    assert check_ok(typed) == (typed == serial)


@given(body, st.integers(min_value=0, max_value=5))
def test_adjacent_swaps_break_the_check_except_zero_and_z(code: str, position: int) -> None:
    serial = code + check_symbol(code)
    swapped = serial[:position] + serial[position + 1] + serial[position] + serial[position + 2 :]
    if swapped != serial and {serial[position], serial[position + 1]} != {"0", "Z"}:
        assert not check_ok(swapped)


@given(body, st.integers(min_value=0, max_value=6), st.sampled_from(ALPHABET))
def test_the_meant_serial_is_among_the_neighbours_of_a_slip(code: str, position: int, symbol: str) -> None:
    serial = code + check_symbol(code)
    typed = serial[:position] + symbol + serial[position + 1 :]
    if typed != serial:
        found = list(neighbours(typed))
        assert canonical(serial) in found
        assert len(found) <= 13
        assert all(check_ok(s) for s in found)


def test_typed_forms_of_one_serial_are_the_same_serial() -> None:
    serial = new_serial()
    code = normalise(serial)
    assert canonical(code.lower()) == serial
    assert canonical(f"p {code[:3]} {code[3:]}") == serial
    assert canonical(serial.replace("0", "O").replace("1", "I")) == serial
    with pytest.raises(SerialFormatError):
        normalise("P-123")
    with pytest.raises(SerialFormatError):
        normalise("P-UUUUU-UU")  # U is not in the alphabet


def test_signature_is_keyed_and_scoped_by_campaign() -> None:
    serial = new_serial()
    assert sign(b"k1", "c", serial) != sign(b"k2", "c", serial)
    assert sign(b"k1", "c", serial) != sign(b"k1", "d", serial)
    assert len(sign(b"k1", "c", serial)) == 4
    assert one_off("ABCD", "ABCE")
    assert one_off("ABCD", "BACD")
    assert not one_off("ABCD", "ABDE")


def test_qr_payload_round_trip_and_foreign_codes() -> None:
    payload = QrPayload("city-2026", new_serial(), "K4M9", 2)
    assert QrPayload.parse(payload.text()) == payload
    assert QrPayload.parse("https://example.org/w/W01") is None
    broken = payload.serial[:-1] + ("0" if payload.serial[-1] != "0" else "1")
    assert QrPayload.parse(f"CP1/c/{broken}/K4M9/1") is None  # the check symbol does not fit
    assert QrPayload.parse("CP1/c/P-UUUUU-UU/K4M9/1") is None  # not symbols of a serial


def test_columns_by_code_or_chinese_name_and_unknown_columns_refused() -> None:
    campaign = spec()
    columns = map_columns(["编号", "录入员", "市场监管所/工作作风", "U1/efficiency"], campaign)
    assert columns.fields == {"serial": 0, "clerk": 1}
    assert columns.answers == {2: ("U1", "style"), 3: ("U1", "efficiency")}
    with pytest.raises(PaperFileError, match=r"column 2 \('U9/style'\)"):
        map_columns(["编号", "U9/style"], campaign)
    with pytest.raises(PaperFileError, match="given twice"):
        map_columns(["U1/style", "市场监管所/style"], campaign)


def _rows(*rows: list[str | None]) -> KeyedRows:
    return KeyedRows(
        campaign="paper-2026",
        file_name="keyed.csv",
        header=["编号", "录入员", "填表日期", "名册编号", *ANSWER_HEADERS],
        rows=[(i + 2, r) for i, r in enumerate(rows)],
        received_at=datetime(2026, 11, 3, 8, tzinfo=UTC),
    )


def test_adapter_reads_levels_by_number_label_or_code_and_redacts_roster_ids() -> None:
    campaign = spec()
    items = list(
        PaperAdapter().parse(
            _rows(
                [
                    "P-8F3K2-Q7",
                    "c1",
                    "2026年11月2日",
                    "R-0042",
                    "1",
                    "比较满意",
                    "basically_satisfied",
                    "5",
                    "",
                    "",
                ],
                [None, None, None, None, None, None, None, None, None, None],  # blank: skipped
            ),
            campaign,
        )
    )
    (item,) = items
    assert isinstance(item, BallotSubmission)
    assert [a.level for a in item.answers] == [
        "satisfied",
        "fairly_satisfied",
        "basically_satisfied",
        "dissatisfied",
    ]
    assert item.identity is not None
    assert item.identity.kind == "roster_id"
    assert item.raw["roster_id"] == "<redacted>"
    assert "R-0042" not in repr(item.raw)
    assert item.meta["serial_typed"] == "P-8F3K2-Q7"
    assert item.source_ref == "keyed.csv#row=2"
    assert item.answered_at == answered_at_for(campaign, parse_date("2026-11-02") or datetime.now().date())


def test_adapter_collects_every_problem_of_a_row() -> None:
    (item,) = PaperAdapter().parse(_rows(["x", "", "yesterday", "", "9", "很好", "", "", "", ""]), spec())
    assert isinstance(item, Rejection)
    assert sorted(p.code for p in item.problems) == [
        "bad_date",
        "clerk_missing",
        "unknown_level",
        "unknown_level",
    ]
    assert all("row 2" in p.detail for p in item.problems)


def test_dates_as_clerks_type_them() -> None:
    assert parse_date("2026/10/5") == parse_date("2026-10-05") == parse_date("20261005")
    assert parse_date("2026-10-05 00:00:00") == parse_date("2026年10月5日")
    assert parse_date("2026-02-30") is None
    campaign = spec()
    # The opening day counts even before noon's clamp: kept inside the campaign.
    opening = answered_at_for(campaign, campaign.opens_at.date())
    assert campaign.opens_at <= opening <= campaign.closes_at
