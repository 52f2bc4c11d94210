"""
Paper forms end to end through the CLI: print → render the PDF → read the QR → key the forms
→ import → score; forged, photocopied, mistyped serials; double entry; scans; the ledger.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pypdfium2  # type: ignore[import-untyped]
import pytest
import zxingcpp

import collect.cli.paper  # noqa: F401  (registers `collect paper` and `collect import paper|scans`)
from collect.paper.serials import QrPayload, new_serial, normalise, sign
from tests.cli.helpers import CliResult, invoke
from tests.conftest import TEST_SECRET
from tests.paper.helpers import CODE, answers, write_entries, write_toml


def _ok(result: CliResult, code: int = 0) -> CliResult:
    assert result.code == code, result.stdout + result.stderr
    return result


def _json(result: CliResult) -> Any:
    return json.loads(result.stdout)


def _printed(
    tmp_path: Path, url: str, count: int, channel: str = "单位", batch: str = "B1"
) -> list[QrPayload]:
    """Print `count` forms and read their serials back from the rendered PDF, as a scanner would."""
    pdf = tmp_path / f"forms-{channel}-{batch}.pdf"
    _ok(
        invoke(
            [
                "paper",
                "print",
                CODE,
                "--channel",
                channel,
                "--count",
                str(count),
                "--out",
                str(pdf),
                "--batch",
                batch,
            ],
            url=url,
        )
    )
    document = pypdfium2.PdfDocument(str(pdf))
    payloads: list[QrPayload] = []
    for index in range(len(document)):
        image = document[index].render(scale=150 / 72).to_pil()
        codes = zxingcpp.read_barcodes(image)
        parsed = [QrPayload.parse(code.text) for code in codes]
        payloads.extend(p for p in parsed if p is not None)
    document.close()
    assert len(payloads) == count  # one page per form here: one code per page
    return payloads


@pytest.fixture
def url(db_url: str, tmp_path: Path) -> str:
    _ok(invoke(["campaign", "load", str(write_toml(tmp_path / "campaign.toml"))], url=db_url))
    return db_url


def _entry(
    payload: QrPayload, clerk: str, *levels: int, serial: str | None = None, signature: str | None = None
) -> dict[str, str]:
    return {
        "编号": serial if serial is not None else payload.serial,
        "校验码": signature if signature is not None else payload.signature,
        "录入员": clerk,
        "填表日期": "2026-11-02",
        **answers(*levels),
    }


def test_print_read_enter_score_round_trip(url: str, tmp_path: Path) -> None:
    forms = _printed(tmp_path, url, 3)
    assert {p.campaign for p in forms} == {CODE}
    assert all(p.signature == sign(TEST_SECRET.encode(), CODE, p.serial) for p in forms)
    rows = [
        _entry(forms[0], "clerk-a", 1, 1, 1, 1, 1, 1),
        _entry(forms[1], "clerk-a", 1, 2, 5, 5, 3, 3),
        _entry(forms[2], "clerk-a", 1, 1, 5, 5, 3, 3),
    ]
    entries = write_entries(tmp_path / "entries.csv", rows)
    report = _json(_ok(invoke(["import", "paper", CODE, str(entries), "--json"], url=url)))
    assert report["by_outcome"] == {"counted": 3}
    # Re-importing the same file adds nothing.
    again = _json(_ok(invoke(["import", "paper", CODE, str(entries), "--json"], url=url)))
    assert again["by_outcome"] == {"already_received": 3}

    scores = _json(_ok(invoke(["score", CODE, "--format", "json"], url=url)))
    units = {u["unit"]: u for u in scores["units"]}
    assert units["U1"]["tiers"]["public"]["cast"] == 3
    assert units["U1"]["score"] == pytest.approx((100 + 100 + 100 + 100 + 80 + 100) / 6, abs=1e-4)
    assert units["U2"]["score"] == pytest.approx((100 * 2 + 0 * 4) / 6, abs=1e-4)
    assert units["U1"]["rank"] == 1
    assert units["U2"]["rank"] == 3

    ledger = _json(_ok(invoke(["paper", "ledger", CODE, "--json"], url=url)))
    (row,) = ledger["rows"]
    assert (row["distribution"], row["batch"]) == ("单位", "B1")
    assert (row["issued"], row["returned"], row["not_returned"], row["valid"]) == (3, 3, 0, 3)
    assert ledger["ok"]
    # `collect report` carries the ledger's reconciliation with its own checks.
    intake = _json(_ok(invoke(["report", CODE, "--json"], url=url)))
    paper_checks = [c for c in intake["checks"] if c["name"].startswith("paper ledger: ")]
    assert paper_checks
    assert all(c["ok"] for c in paper_checks)
    assert {c["name"] for c in paper_checks} == {f"paper ledger: {c['name']}" for c in ledger["checks"]}


def test_forged_reused_mistyped_and_bad_signature_are_kept_not_counted(url: str, tmp_path: Path) -> None:
    forms = _printed(tmp_path, url, 5)
    code = normalise(forms[2].serial)
    # One symbol off (the check symbol catches it), a slip a clerk makes.
    slip = code[:2] + ("A" if code[2] != "A" else "B") + code[3:]
    forged = new_serial()
    bad_signature = "ZZZZ" if forms[3].signature != "ZZZZ" else "YYYY"
    rows = [
        _entry(forms[0], "clerk-a", 1, 1, 2, 2, 3, 3),
        _entry(forms[0], "clerk-a", 1, 1, 2, 2, 3, 3),  # the photocopy: same serial, same answers
        _entry(forms[1], "clerk-a", 2, 2, 2, 2, 2, 2),
        _entry(forms[1], "clerk-b", 5, 5, 5, 5, 5, 5),  # same serial, other answers: review
        _entry(forms[2], "clerk-a", 1, 2, 3, 4, 5, 1, serial=slip, signature=""),
        _entry(forms[0], "clerk-a", 1, 1, 1, 1, 1, 1, serial=forged, signature=""),  # never issued
        _entry(forms[3], "clerk-a", 1, 1, 1, 1, 1, 1, signature=bad_signature),
    ]
    entries = write_entries(tmp_path / "entries.csv", rows)
    report = _json(_ok(invoke(["import", "paper", CODE, str(entries), "--json"], url=url), code=1))
    by_row = {f["row"]: f for f in report["forms"]}
    assert by_row[3]["reason"] == "serial_reused"
    assert by_row[3]["outcome"] == "rejected"
    assert by_row[5]["outcome"] == "pending_review"
    assert by_row[5]["reason"] == "serial_reused_different_answers"
    assert by_row[6]["outcome"] == "pending_review"
    assert by_row[6]["reason"] == "serial_mistyped"
    assert by_row[6]["serial"]["candidates"] == [forms[2].serial]
    assert by_row[7]["reason"] == "serial_unknown"
    assert by_row[8]["reason"] == "signature_mismatch"
    # Rows 2 and 4 counted when they came in; row 4's form is held since its twin (row 5) arrived.
    assert report["by_outcome"] == {"counted": 2, "pending_review": 2, "rejected": 3}

    # The first form with serial 2 was counted; once its twin appeared, both wait for a person.
    review = _json(_ok(invoke(["review", "list", CODE, "--json"], url=url)))
    items = review["items"] if isinstance(review, dict) else review
    kinds = sorted((i["kind"], i["reason"]) for i in items)
    assert kinds.count(("serial_reuse", "serial_reused_different_answers")) == 2
    assert ("paper_serial", "serial_mistyped") in kinds
    mistyped = next(i for i in items if i["reason"] == "serial_mistyped")
    assert mistyped["evidence"]["candidates"] == [forms[2].serial]
    assert mistyped["evidence"]["distribution"] == "单位"

    ledger = _json(_ok(invoke(["paper", "ledger", CODE, "--json"], url=url)))
    rows_by = {(r["distribution"], r["batch"]): r for r in ledger["rows"]}
    issued = rows_by[("单位", "B1")]
    assert issued["issued"] == 5
    assert issued["returned"] + issued["not_returned"] == 5
    assert issued["not_returned"] == 1  # form 5 never came back
    assert issued["valid"] == 1
    assert issued["pending_review"] == 3
    assert issued["invalid_by_reason"] == {"serial_reused": 1, "signature_mismatch": 1}
    assert rows_by[("(unknown serial)", "")]["invalid_by_reason"] == {"serial_unknown": 1}
    assert ledger["ok"], ledger["checks"]

    # A clerk confirms the mistyped serial: the form counts, under the serial it was meant to be.
    _ok(
        invoke(["review", "accept", str(mistyped["id"]), "--note", "sheet shows the printed serial"], url=url)
    )
    ledger = _json(_ok(invoke(["paper", "ledger", CODE, "--json"], url=url)))
    assert {(r["distribution"], r["batch"]): r for r in ledger["rows"]}[("单位", "B1")]["valid"] == 2
    report_cli = _json(_ok(invoke(["report", CODE, "--json"], url=url), code=0))
    paper_forms = report_cli["forms"]["by_channel"]["paper"]
    assert paper_forms["received"] == 7
    assert paper_forms["invalid_by_reason"]["serial_reused"] == 1
    assert paper_forms["invalid_by_reason"]["serial_unknown"] == 1


def test_double_entry_disagreement_is_listed_and_a_third_clerk_settles_it(url: str, tmp_path: Path) -> None:
    forms = _printed(tmp_path, url, 2)
    first = write_entries(
        tmp_path / "a.csv",
        [_entry(forms[0], "clerk-a", 1, 1, 1, 1, 1, 1), _entry(forms[1], "clerk-a", 2, 2, 2, 2, 2, 2)],
    )
    done = _json(_ok(invoke(["import", "paper", CODE, str(first), "--double-entry", "--json"], url=url)))
    assert done["by_outcome"] == {"awaiting": 2}
    ledger = _json(_ok(invoke(["paper", "ledger", CODE, "--json"], url=url)))
    assert ledger["total"]["awaiting_entry"] == 2
    assert ledger["total"]["valid"] == 0
    assert ledger["ok"]

    second = write_entries(
        tmp_path / "b.csv",
        [_entry(forms[0], "clerk-b", 1, 1, 1, 1, 1, 1), _entry(forms[1], "clerk-b", 2, 2, 2, 3, 2, 2)],
    )
    result = _json(
        _ok(invoke(["import", "paper", CODE, str(second), "--double-entry", "--json"], url=url), 1)
    )
    assert result["by_outcome"] == {"counted": 1, "disagreement": 1}
    listed = _json(_ok(invoke(["paper", "entries", CODE, "--state", "disagreement", "--json"], url=url)))
    (form,) = listed["forms"]
    assert form["serial"] == forms[1].serial
    assert sorted(form["clerks"]) == ["clerk-a", "clerk-b"]
    assert form["differences"] == ["U2/efficiency: fairly_satisfied ≠ basically_satisfied"]

    third = write_entries(tmp_path / "c.csv", [_entry(forms[1], "clerk-c", 2, 2, 2, 2, 2, 2)])
    settled = _json(_ok(invoke(["import", "paper", CODE, str(third), "--double-entry", "--json"], url=url)))
    assert settled["by_outcome"] == {"counted": 1}
    assert _json(_ok(invoke(["paper", "entries", CODE, "--json"], url=url)))["forms"] == []
    ledger = _json(_ok(invoke(["paper", "ledger", CODE, "--json"], url=url)))
    assert (ledger["total"]["forms"], ledger["total"]["valid"], ledger["total"]["awaiting_entry"]) == (
        2,
        2,
        0,
    )
    assert ledger["ok"]
    scores = _json(_ok(invoke(["score", CODE, "--format", "json"], url=url)))
    assert {u["unit"]: u["tiers"]["public"]["cast"] for u in scores["units"]} == {"U1": 2, "U2": 2, "U3": 2}


def test_scans_link_by_qr_and_a_photocopied_scan_is_refused(url: str, tmp_path: Path) -> None:
    pdf = tmp_path / "forms.pdf"
    _ok(invoke(["paper", "print", CODE, "--channel", "流动站", "--count", "2", "--out", str(pdf)], url=url))
    scans = tmp_path / "scans"
    scans.mkdir()
    document = pypdfium2.PdfDocument(str(pdf))
    document[0].render(scale=150 / 72).to_pil().save(scans / "form-1.png")
    document[1].render(scale=120 / 72).to_pil().convert("L").save(scans / "form-2.jpg", quality=85)
    copy = document[0].render(scale=200 / 72).to_pil()  # the same form, another sheet
    document.close()
    first = _json(_ok(invoke(["import", "scans", CODE, str(scans), "--json"], url=url)))
    assert first["by_status"] == {"linked": 2}
    # Key form 1 so that its ballot exists, then a second image of it turns up.
    payloads = [QrPayload.parse(c.text) for c in zxingcpp.read_barcodes(copy)]
    payload = payloads[0]
    assert payload is not None
    entries = write_entries(tmp_path / "e.csv", [_entry(payload, "clerk-a", 1, 1, 1, 1, 1, 1)])
    _ok(invoke(["import", "paper", CODE, str(entries), "--json"], url=url))
    copy.save(scans / "form-1-copy.png")
    second = _json(_ok(invoke(["import", "scans", CODE, str(scans), "--json"], url=url), code=1))
    assert second["by_status"]["refused"] == 1
    assert second["by_reason"] == {"scan_image_mismatch": 1}
    review = _json(_ok(invoke(["review", "list", CODE, "--json"], url=url)))
    items = review["items"] if isinstance(review, dict) else review
    (item,) = [i for i in items if i["kind"] == "scan_reuse"]
    assert item["reason"] == "serial_reused"
    assert item["evidence"]["serial"] == payload.serial
    ledger = _json(_ok(invoke(["paper", "ledger", CODE, "--json"], url=url)))
    row = ledger["rows"][0]
    assert (row["scans_linked"], row["scans_refused"], row["pending_review"]) == (2, 1, 1)
    # Running again over the same folder adds nothing.
    third = _json(_ok(invoke(["import", "scans", CODE, str(scans), "--json"], url=url), code=0))
    assert third["by_status"] == {"already_linked": 2, "already_refused": 1}


def test_unserialed_channel_and_missing_serial(url: str, tmp_path: Path) -> None:
    master = tmp_path / "newspaper.pdf"
    _ok(
        invoke(
            [
                "paper",
                "print",
                CODE,
                "--channel",
                "报纸",
                "--count",
                "1",
                "--out",
                str(master),
                "--unserialed",
            ],
            url=url,
        )
    )
    rows = [
        {"录入员": "clerk-a", "发放渠道": "报纸", **answers(1, 1, 1, 1, 1, 1)},
        {"录入员": "clerk-a", "发放渠道": "单位", **answers(1, 1, 1, 1, 1, 1)},
    ]
    entries = write_entries(
        tmp_path / "n.csv", rows, headers=["录入员", "发放渠道", *answers(1, 1, 1, 1, 1, 1)]
    )
    report = _json(_ok(invoke(["import", "paper", CODE, str(entries), "--json"], url=url), code=1))
    assert report["by_outcome"] == {"counted": 1, "rejected": 1}
    assert report["by_reason"] == {"serial_missing": 1}
    ledger = _json(_ok(invoke(["paper", "ledger", CODE, "--json"], url=url)))
    newspaper = next(r for r in ledger["rows"] if r["distribution"] == "报纸")
    assert newspaper["issued"] is None
    assert newspaper["valid"] == 1
    assert ledger["ok"]


def test_bad_files_are_refused_whole(url: str, tmp_path: Path) -> None:
    bad = write_entries(tmp_path / "bad.csv", [{"编号": "x"}], headers=["编号", "录入员", "U9/style"])
    result = invoke(["import", "paper", CODE, str(bad)], url=url)
    assert result.code == 2
    assert "column 3 ('U9/style')" in result.stderr
    missing = invoke(["import", "paper", CODE, str(tmp_path / "nope.csv")], url=url)
    assert missing.code == 2
    unknown = invoke(
        ["paper", "print", "nope", "--channel", "x", "--count", "1", "--out", str(tmp_path / "x.pdf")],
        url=url,
    )
    assert unknown.code == 2
    assert not (tmp_path / "x.pdf").exists()
