"""`collect import calls`: exit codes of contract.md, every encoding and format, all-or-nothing imports."""

from __future__ import annotations

import csv
import json
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

import collect.cli.imports  # noqa: F401  (registers `collect import`)
from collect.ballot import Answer, BallotSubmission, Identity, Rejection
from collect.campaign import CampaignSpec
from collect.channels import calls_files
from collect.cli.imports import ImportRefused, import_calls, read_profile
from collect.ingest import ingest
from collect.store import Store
from tests.channels.test_calls_files import (
    LONG_HEADER,
    LONG_PROFILE,
    PROFILE,
    Call,
    calls,
    csv_text,
    long_rows,
    write_csv,
    write_xlsx,
)
from tests.cli.helpers import CliResult, invoke
from tests.conftest import count
from tests.store.factories import BALLOT, campaign_spec, save

CODE = "calls-2026"


@pytest.fixture
def spec(branch_spec: CampaignSpec) -> CampaignSpec:
    return campaign_spec(branch_spec, code=CODE, open_tier=True)


@pytest.fixture
def calls_store(store: Store, spec: CampaignSpec) -> Store:
    save(store, spec)
    return store


@pytest.fixture
def profile_path(tmp_path: Path) -> Path:
    path = tmp_path / "acme.profile.toml"
    path.write_text(PROFILE, encoding="utf-8")
    return path


def run_import(store: Store, file: Path, *extra: str, profile: Path | None = None) -> CliResult:
    args = ["import", "calls", CODE, str(file), *extra]
    if profile is not None:
        args += ["--profile", str(profile)]
    return invoke(args, url=store.url)


def submissions(store: Store) -> int:
    return count(store, "SELECT count(*) FROM submission WHERE channel = 'phone'")


def counted(store: Store) -> int:
    return count(store, "SELECT count(*) FROM ballot WHERE status = 'counted' AND channel = 'phone'")


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gbk", "gb18030"])
def test_every_csv_encoding_with_title_blank_and_totals_rows(
    calls_store: Store, tmp_path: Path, profile_path: Path, encoding: str
) -> None:
    file = write_csv(tmp_path / "calls.csv", calls(12), encoding, blank_every=5)
    result = run_import(calls_store, file, "--json", profile=profile_path)
    assert result.code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["accepted"] == 12
    assert report["quarantined"] == 0
    assert report["header_row"] == 2
    assert report["skipped"] == {"blank": 2, "totals": 1}
    assert counted(calls_store) == 12


def test_gbk_without_bom_keeps_chinese_unit_names(
    calls_store: Store, tmp_path: Path, profile_path: Path
) -> None:
    # 城东所 only decodes right as GBK; read as UTF-8 it would be mojibake and an unknown unit.
    rows = [Call("C1", "13800138000", "2026-09-01 10:00:00", "成功", "城东所", "满意")]
    file = write_csv(tmp_path / "gbk.csv", rows, "gbk", title=False, totals=False)
    assert not file.read_bytes().startswith(b"\xef\xbb\xbf")
    result = run_import(calls_store, file, "--json", profile=profile_path)
    assert result.code == 0, result.stderr
    assert json.loads(result.stdout)["encoding"] == "gb18030"
    with calls_store.engine.connect() as connection:
        unit, level = connection.execute(
            sa.text("SELECT b.unit_code, a.level_code FROM ballot b JOIN answer a ON a.ballot_id = b.id")
        ).one()
    assert (unit, level) == ("S01", "satisfied")


def test_xlsx_with_title_merged_units_and_totals(
    calls_store: Store, tmp_path: Path, profile_path: Path
) -> None:
    file = write_xlsx(tmp_path / "calls.xlsx", calls(10))
    result = run_import(calls_store, file, "--json", profile=profile_path)
    assert result.code == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["kind"] == "xlsx"
    assert report["accepted"] == 10  # merged unit cells filled down, phone numbers stored as numbers read
    assert report["skipped"]["totals"] == 1
    with calls_store.engine.connect() as connection:
        units = {
            r.unit_code: r.n
            for r in connection.execute(
                sa.text("SELECT unit_code, count(*) AS n FROM ballot GROUP BY unit_code")
            )
        }
    assert units == {"S01": 2, "S02": 2, "S03": 2, "S04": 2, "O01": 2}


def test_each_quarantine_reason_is_reported_kept_and_exits_1(
    calls_store: Store, tmp_path: Path, profile_path: Path
) -> None:
    rows = [
        ["C1", "13800138000", "2026-09-01 10:00:00", "成功", "城东工商所", "1"],
        ["C2", "13800138001", "2026-09-01 10:01:00", "拒访", "城东工商所", ""],
        ["C3", "13800138002", "2026-09-01 10:02:00", "成功", "城东工商所", ""],
        ["C4", "12345", "2026-09-01 10:03:00", "成功", "城东工商所", "1"],
        ["C5", "13800138004", "2026-09-01 10:04:00", "成功", "火星所", "1"],
        ["C6", "13800138005", "2026-09-01 10:05:00", "成功", "城东工商所", "8"],
        ["C1", "13800138000", "2026-09-01 10:00:00", "成功", "城东工商所", "1"],  # the export repeats a row
        ["C7", "13800138000", "2026-09-01 10:30:00", "成功", "城东工商所", "2"],  # same person, later call
        ["C8", "13800138008", "不知何时", "成功", "城东工商所", "1"],
    ]
    file = write_csv(tmp_path / "bad.csv", rows, "gbk")
    out = tmp_path / "quarantine.csv"
    result = run_import(calls_store, file, "--json", "--quarantine-out", str(out), profile=profile_path)
    assert result.code == 1, result.stderr
    report = json.loads(result.stdout)
    assert report["accepted"] == 1
    assert report["by_reason"] == {
        "already_counted": 1,
        "bad_call_time": 1,
        "duplicate_row": 1,
        "invalid_phone": 1,
        "no_answers": 1,
        "not_completed": 1,
        "unknown_code": 1,
        "unknown_unit": 1,
    }
    # Nothing is dropped: every row is a submission, quarantined ones with their reason.
    assert submissions(calls_store) == 9
    with out.open(encoding="utf-8-sig", newline="") as handle:
        listed = list(csv.DictReader(handle))
    assert sorted(r["reason"] for r in listed) == sorted(report["by_reason"])
    assert {r["row"] for r in listed if r["reason"] == "duplicate_row"} == {"9"}
    # The quarantine file names rows, not people: no phone number in it.
    assert "13800138000" not in out.read_text(encoding="utf-8-sig")
    assert (
        next(r for r in listed if r["reason"] == "already_counted")["phone"] == "'+86138****8000"
    )  # as Excel must not run it


def test_reimporting_the_same_file_adds_nothing(
    calls_store: Store, tmp_path: Path, profile_path: Path
) -> None:
    rows = [*calls(5), Call("C9", "13800138000", "2026-09-01 11:00:00", "拒访", "城东工商所", "")]
    file = write_csv(tmp_path / "calls.csv", rows, "gbk")
    first = run_import(calls_store, file, "--json", profile=profile_path)
    assert first.code == 1
    before = (submissions(calls_store), counted(calls_store))
    second = run_import(calls_store, file, "--json", profile=profile_path)
    assert second.code == 0, second.stdout
    report = json.loads(second.stdout)
    assert report["already_received"] == 6
    assert report["accepted"] == 0
    assert report["quarantined"] == 0
    assert (submissions(calls_store), counted(calls_store)) == before == (6, 5)


def test_an_overlapping_later_export_adds_only_the_new_calls(
    calls_store: Store, tmp_path: Path, profile_path: Path
) -> None:
    refused = Call("R1", "13800138000", "2026-09-01 09:00:00", "拒访", "城东工商所", "")
    monday = write_csv(tmp_path / "monday.csv", [refused, *calls(6)], "gbk")
    # Tuesday's export repeats Monday's calls (in another order, as XLSX) and adds four.
    tuesday = write_xlsx(tmp_path / "tuesday.xlsx", [*reversed(calls(10)), refused], merge_units=False)
    assert run_import(calls_store, monday, profile=profile_path).code == 1
    result = run_import(calls_store, tuesday, "--json", profile=profile_path)
    report = json.loads(result.stdout)
    assert report["accepted"] == 4
    assert report["already_received"] == 7
    assert result.code == 0, result.stdout
    assert submissions(calls_store) == 11
    assert counted(calls_store) == 10


def test_dry_run_reports_the_same_and_writes_nothing(
    calls_store: Store, tmp_path: Path, profile_path: Path
) -> None:
    rows = [*calls(4), Call("C9", "1", "2026-09-01 11:00:00", "成功", "城东工商所", "1")]
    file = write_csv(tmp_path / "calls.csv", rows, "gbk")
    dry = run_import(calls_store, file, "--json", "--dry-run", profile=profile_path)
    assert dry.code == 1
    assert submissions(calls_store) == 0
    assert count(calls_store, "SELECT count(*) FROM audit_log WHERE action = 'import.calls'") == 0
    real = run_import(calls_store, file, "--json", profile=profile_path)
    dry_report, real_report = json.loads(dry.stdout), json.loads(real.stdout)
    assert dry_report["dry_run"] is True
    for key in ("accepted", "quarantined", "by_reason", "rows_read"):
        assert dry_report[key] == real_report[key]
    assert submissions(calls_store) == 5


def test_a_failure_mid_way_leaves_nothing_behind(
    calls_store: Store, tmp_path: Path, profile_path: Path, spec: CampaignSpec
) -> None:
    file = write_csv(tmp_path / "calls.csv", calls(50), "gbk")

    def fail_after_30(
        items: Iterator[BallotSubmission | Rejection],
    ) -> Iterator[BallotSubmission | Rejection]:
        for n, item in enumerate(items):
            if n == 30:
                raise RuntimeError("disk full")
            yield item

    with pytest.raises(RuntimeError, match="disk full"):
        import_calls(
            calls_store, CODE, file, profile=read_profile(profile_path), actor="t", items_hook=fail_after_30
        )
    assert submissions(calls_store) == 0
    assert count(calls_store, "SELECT count(*) FROM ballot") == 0
    assert count(calls_store, "SELECT count(*) FROM audit_log WHERE action = 'import.calls'") == 0


def test_bad_bytes_deep_in_a_file_refuse_it_whole(
    calls_store: Store, tmp_path: Path, profile_path: Path
) -> None:
    good = csv_text(calls(3000), totals=False).encode("gbk")
    cut = good.index(b"C02500")
    file = tmp_path / "broken.csv"
    file.write_bytes(good[:cut] + b"\xff\xff\xff" + good[cut:])  # not GBK, not UTF-8
    result = run_import(calls_store, file, profile=profile_path)
    assert result.code == 2
    assert "broken.csv" in result.stderr
    assert "row 2503:" in result.stderr
    assert submissions(calls_store) == 0


def test_an_earlier_call_beats_an_earlier_imported_web_ballot(
    calls_store: Store, tmp_path: Path, profile_path: Path
) -> None:
    # domain.md: the call time decides, not the import order. The API ballot arrived first
    # (10:30) but the call was answered at 10:00: the call counts, the API one is superseded.
    api = BallotSubmission(
        campaign=CODE,
        channel="api",
        source_ref="kiosk/1",
        identity=Identity("phone", "+8613800138000"),
        answers=(Answer("S01", "overall", "dissatisfied"),),
        answered_at=datetime(2026, 9, 1, 2, 30, tzinfo=UTC),
        received_at=datetime(2026, 9, 1, 2, 30, tzinfo=UTC),
    )
    assert ingest(calls_store, api).outcome == "counted"
    file = write_csv(
        tmp_path / "calls.csv",
        [Call("C1", "138 0013 8000", "2026-09-01 10:00:00", "成功", "城东工商所", "满意")],
        "gbk",
    )
    result = run_import(calls_store, file, "--json", profile=profile_path)
    assert result.code == 0, result.stdout
    with calls_store.engine.connect() as connection:
        rows = connection.execute(
            sa.select(BALLOT.c.channel, BALLOT.c.status, BALLOT.c.reason).order_by(BALLOT.c.channel)
        ).all()
    assert [tuple(r) for r in rows] == [
        ("api", "superseded", "earlier_answer_counts"),
        ("phone", "counted", None),
    ]


def test_a_later_call_for_a_person_who_voted_earlier_is_quarantined(
    calls_store: Store, tmp_path: Path, profile_path: Path
) -> None:
    web = BallotSubmission(
        campaign=CODE,
        channel="api",
        source_ref="kiosk/2",
        identity=Identity("phone", "+8613800138000"),
        answers=(Answer("S01", "overall", "satisfied"),),
        answered_at=datetime(2026, 9, 1, 1, 0, tzinfo=UTC),
        received_at=datetime(2026, 9, 1, 1, 0, tzinfo=UTC),
    )
    assert ingest(calls_store, web).outcome == "counted"
    file = write_csv(
        tmp_path / "c.csv", [Call("C1", "13800138000", "2026-09-01 10:00", "成功", "城东工商所", "5")]
    )
    result = run_import(calls_store, file, "--json", profile=profile_path)
    assert result.code == 1
    assert json.loads(result.stdout)["by_reason"] == {"already_counted": 1}


def test_a_later_row_with_an_earlier_call_displaces_the_first_and_the_report_says_so(
    calls_store: Store, tmp_path: Path, profile_path: Path
) -> None:
    rows = [
        Call("C1", "13800138000", "2026-09-01 12:00:00", "成功", "城东工商所", "1"),
        Call("C2", "13800138000", "2026-09-01 09:00:00", "成功", "城东工商所", "5"),
    ]
    result = run_import(calls_store, write_csv(tmp_path / "c.csv", rows), "--json", profile=profile_path)
    report = json.loads(result.stdout)
    assert (report["accepted"], report["by_reason"]) == (1, {"already_counted": 1})
    assert report["quarantine"][0]["row"] == 3  # C1, the later call, lost
    with calls_store.engine.connect() as connection:
        level = connection.execute(
            sa.text(
                "SELECT a.level_code FROM ballot b JOIN answer a ON a.ballot_id = b.id "
                "WHERE b.status = 'counted'"
            )
        ).scalar_one()
    assert level == "dissatisfied"


def test_ivr_long_export(calls_store: Store, tmp_path: Path) -> None:
    profile = tmp_path / "ivr.profile.toml"
    profile.write_text(LONG_PROFILE, encoding="utf-8")
    rows = [
        *long_rows("A1", "13800138000", [("Q1", "1"), ("Q2", "2")]),
        *long_rows("A2", "13900139000", [("Q1", "3")], minute=3),  # hung up after Q1
    ]
    file = write_csv(tmp_path / "ivr.csv", rows, "utf-8", title=False, totals=False, header=LONG_HEADER)
    result = run_import(calls_store, file, "--json", profile=profile)
    assert result.code == 1
    report = json.loads(result.stdout)
    assert (report["accepted"], report["by_reason"]) == (1, {"incomplete": 1})
    assert count(calls_store, "SELECT count(*) FROM ballot") == 2  # A1 rated two units


def test_without_a_profile_one_is_proposed_written_and_used(calls_store: Store, tmp_path: Path) -> None:
    file = write_csv(tmp_path / "calls.csv", calls(3), "gbk")
    result = run_import(calls_store, file, "--json")
    assert result.code == 0, result.stderr
    written = tmp_path / "calls.csv.profile.toml"
    assert json.loads(result.stdout)["profile_written"] == str(written)
    assert "check it" in result.stderr
    profile = read_profile(written)
    assert profile.columns.call_id == "呼叫编号"
    # The proposed profile, passed back, finds the same calls: nothing added twice.
    again = run_import(calls_store, file, "--json", profile=written)
    assert json.loads(again.stdout)["already_received"] == 3


def test_the_import_is_in_the_audit_log(calls_store: Store, tmp_path: Path, profile_path: Path) -> None:
    file = write_csv(tmp_path / "calls.csv", calls(2), "gbk")
    assert run_import(calls_store, file, profile=profile_path).code == 0
    with calls_store.engine.connect() as connection:
        actor, detail = connection.execute(
            sa.text("SELECT actor, detail FROM audit_log WHERE action = 'import.calls'")
        ).one()
    detail = json.loads(detail) if isinstance(detail, str) else detail
    assert actor.startswith("cli:")
    assert detail["file"] == "calls.csv"
    assert detail["accepted"] == 2
    assert len(detail["file_sha256"]) == 64


def test_the_table_report(calls_store: Store, tmp_path: Path, profile_path: Path) -> None:
    rows = [*calls(2), Call("C9", "13800138009", "2026-09-01 11:00:00", "拒访", "城东工商所", "")]
    result = run_import(calls_store, write_csv(tmp_path / "c.csv", rows), profile=profile_path)
    assert result.code == 1
    assert "rows read" in result.stdout
    assert "not_completed" in result.stdout
    assert "row 5: not_completed" in result.stdout


# Files refused whole: exit 2, a message naming the file, nothing written.


def test_not_a_table(calls_store: Store, tmp_path: Path, profile_path: Path) -> None:
    file = tmp_path / "photo.csv"
    file.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(200))
    result = run_import(calls_store, file, profile=profile_path)
    assert result.code == 2
    assert "photo.csv" in result.stderr
    assert "not a CSV" in result.stderr


def test_a_zip_that_is_not_a_workbook(calls_store: Store, tmp_path: Path, profile_path: Path) -> None:
    file = tmp_path / "calls.xlsx"
    with zipfile.ZipFile(file, "w") as archive:
        archive.writestr("readme.txt", "hello")
    result = run_import(calls_store, file, profile=profile_path)
    assert result.code == 2
    assert "not an XLSX workbook" in result.stderr


def test_a_zip_bomb(
    calls_store: Store, tmp_path: Path, profile_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(calls_files, "MAX_XLSX_UNCOMPRESSED", 1024 * 1024)
    file = tmp_path / "bomb.xlsx"
    with zipfile.ZipFile(file, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("xl/workbook.xml", "<workbook/>")
        archive.writestr("xl/worksheets/sheet1.xml", b"0" * (4 * 1024 * 1024))
    result = run_import(calls_store, file, profile=profile_path)
    assert result.code == 2
    assert "zip bomb" in result.stderr
    assert file.stat().st_size < 100_000


def test_too_large(
    calls_store: Store, tmp_path: Path, profile_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(calls_files, "MAX_FILE_BYTES", 1000)
    file = write_csv(tmp_path / "big.csv", calls(100))
    result = run_import(calls_store, file, profile=profile_path)
    assert result.code == 2
    assert "big.csv" in result.stderr
    assert "allowed" in result.stderr


def test_headers_that_match_no_profile(calls_store: Store, tmp_path: Path, profile_path: Path) -> None:
    file = tmp_path / "other.csv"
    file.write_text("姓名,地址,金额\n张三,北京,100\n", encoding="utf-8")
    with_profile = run_import(calls_store, file, profile=profile_path)
    assert with_profile.code == 2
    assert "headers match no profile" in with_profile.stderr
    assert "呼叫编号" in with_profile.stderr
    without = run_import(calls_store, file)
    assert without.code == 2
    assert "headers match no profile" in without.stderr
    assert submissions(calls_store) == 0


def test_unknown_campaign_and_bad_profile(calls_store: Store, tmp_path: Path) -> None:
    file = write_csv(tmp_path / "c.csv", calls(1))
    assert invoke(["import", "calls", "nope", str(file)], url=calls_store.url).code == 2
    bad = tmp_path / "bad.toml"
    bad.write_text('vendor = "x"\n[columns]\nphone = "p"\n', encoding="utf-8")
    result = run_import(calls_store, file, profile=bad)
    assert result.code == 2
    assert "called_at" in result.stderr
    misfit = tmp_path / "misfit.toml"
    misfit.write_text(PROFILE.replace('aspect = "overall"', 'aspect = "speed"'), encoding="utf-8")
    with pytest.raises(ImportRefused, match="does not fit campaign"):
        import_calls(calls_store, CODE, file, profile=read_profile(misfit), actor="t")


def test_quarantine_export_is_formula_safe(calls_store: Store, tmp_path: Path, profile_path: Path) -> None:
    rows = [Call("=HYPERLINK(1)", "13800138000", "2026-09-01 10:00", "成功", "@SUM(A1)", "1")]
    out = tmp_path / "q.csv"
    result = run_import(
        calls_store, write_csv(tmp_path / "c.csv", rows), "--quarantine-out", str(out), profile=profile_path
    )
    assert result.code == 1
    with out.open(encoding="utf-8-sig", newline="") as handle:
        row = next(csv.DictReader(handle))
    assert row["call_id"] == "'=HYPERLINK(1)"
    assert row["reason"] == "unknown_unit"
    assert row["detail"].startswith("unit '@SUM(A1)'")
