"""
`collect demo`: the branch-office campaign of the sources, end to end, on embedded SQLite.

Loads the example campaign, imports synthetic rosters, draws the recipients' sample, issues
ballot links, casts ballots through the real HTTP app (web ballot pages with their CSRF
tokens, the JSON API for a rating device), prints the intake report and the ranked score
table, then serves the web UI. Running it again on the same database adds nothing.
"""

from __future__ import annotations

import csv
import random
import re
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from rich.console import Console
from rich.table import Table
from starlette.testclient import TestClient

from collect.access import create_api_key
from collect.campaign import CampaignSpec, load_campaign_file
from collect.demo_data import DEMO_SEED, RECIPIENT_STRATA, draw_level, unit_profiles, write_rosters
from collect.roster import import_roster, issue_invitations
from collect.settings import Settings
from collect.store import Store
from collect.store.campaigns import save_campaign
from collect.store.migrate import ensure_current
from collect.store.tables import BALLOT, CAMPAIGN, SUBMISSION
from collect.web.app import create_app

EXAMPLE = Path(__file__).parent / "examples" / "branch-office.toml"
PHONE_PROFILE = Path(__file__).parent / "examples" / "phone-survey.profile.toml"
SHANGHAI = ZoneInfo("Asia/Shanghai")
ACTOR = "demo"
# Share of invited respondents who never answer: quotas are not always filled in real life.
NON_RESPONSE = 0.08
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')
_QUESTION = re.compile(r'name="(a\.[^"]+)"')


@dataclass
class Tally:
    """What the demo sent, by channel, to check against what the store says."""

    sent: dict[str, int] = field(default_factory=dict)
    outcomes: dict[str, int] = field(default_factory=dict)

    def add(self, channel: str, outcome: str) -> None:
        self.sent[channel] = self.sent.get(channel, 0) + 1
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1


def run_demo(settings: Settings, console: Console, *, now: datetime | None = None) -> Store:
    """Load, sample, vote through the app, and return the open store (the caller closes it)."""
    store = Store(settings)
    store.ping()
    ensure_current(store.engine)
    spec = load_campaign_file(str(EXAMPLE))
    with store.engine.begin() as connection:
        action = save_campaign(connection, spec, actor=ACTOR)
    console.print(f"[bold]1.[/] campaign [cyan]{spec.code}[/] {spec.name}: {action}")
    if _counted(store, spec.code) > 0:
        console.print("   ballots are already in this database: showing the results again (nothing added)")
        return store
    phones = _load_rosters(store, spec, console)
    links = issue_invitations(store, spec.code, actor=ACTOR)
    console.print(f"[bold]4.[/] {len(links)} ballot links issued (COLLECT_PUBLIC_URL/b/<token>)")
    tally = Tally()
    rng = random.Random(DEMO_SEED)
    profiles = unit_profiles(spec)
    clock_now = now or datetime.now(UTC)
    app = create_app(settings, store, clock=lambda: clock_now)
    with TestClient(app) as client:
        for link in links:
            if rng.random() < NON_RESPONSE:
                continue
            _vote_on_web(client, spec, link.url, profiles, rng, tally)
        _vote_by_api(client, store, spec, phones, profiles, rng, tally)
    console.print(
        f"[bold]5.[/] sent {sum(tally.sent.values())} ballots through the HTTP app "
        f"({', '.join(f'{k} {v}' for k, v in sorted(tally.sent.items()))}): "
        f"{', '.join(f'{k} {v}' for k, v in sorted(tally.outcomes.items()))}"
    )
    _phone_survey(store, spec, phones, profiles, rng, console, clock_now)
    return store


def _counted(store: Store, code: str) -> int:
    with store.engine.connect() as connection:
        return int(
            connection.execute(
                sa.select(sa.func.count())
                .select_from(BALLOT.join(CAMPAIGN, CAMPAIGN.c.id == BALLOT.c.campaign_id))
                .where(CAMPAIGN.c.code == code, BALLOT.c.status == "counted")
            ).scalar_one()
        )


def _load_rosters(store: Store, spec: CampaignSpec, console: Console) -> dict[str, list[str]]:
    """
    Import the rosters and draw samples. Returns phone numbers per tier (for the API and the
    phone survey); for a drawn tier, the drawn respondents' numbers come first.
    """
    from collect.dedupe.sampling import draw_sample

    phones: dict[str, list[str]] = {}
    by_id: dict[str, dict[str, str]] = {}
    with tempfile.TemporaryDirectory(prefix="collect-demo-") as directory:
        files = write_rosters(spec, Path(directory))
        for roster in files:
            import_roster(store, spec.code, roster.tier, roster.path, actor=ACTOR)
            with roster.path.open(encoding="utf-8") as handle:
                rows = list(csv.DictReader(handle))
            phones[roster.tier] = [row["手机号码"] for row in rows]
            by_id[roster.tier] = {row["编号"]: row["手机号码"] for row in rows}
        console.print("[bold]2.[/] rosters imported: " + ", ".join(f"{r.tier} {r.rows}" for r in files))
    for tier in spec.tiers:
        if tier.sampling != "draw":
            continue
        allocation = {stratum: drawn for stratum, _size, drawn in RECIPIENT_STRATA}
        result = draw_sample(
            store,
            spec.code,
            tier.code,
            method="stratified",
            size=sum(allocation.values()),
            seed=str(DEMO_SEED),
            strata="类别",
            allocation=allocation,
            actor=ACTOR,
        )
        console.print(
            f"[bold]3.[/] sample drawn for {tier.code}: {len(result.picked)} of {result.frame_size}, "
            "stratified "
            f"{allocation}, seed {DEMO_SEED}, frame sha256 {result.frame_sha256[:12]}…"
        )
        drawn = [by_id[tier.code][p.roster_id] for p in result.picked]
        phones[tier.code] = drawn + [n for n in phones[tier.code] if n not in set(drawn)]
    return phones


def _vote_on_web(
    client: TestClient,
    spec: CampaignSpec,
    url: str,
    profiles: dict[str, list[float]],
    rng: random.Random,
    tally: Tally,
) -> None:
    path = "/b/" + url.rsplit("/b/", 1)[1]
    page = client.get(path)
    if page.status_code != 200:
        tally.add("web", f"page {page.status_code}")
        return
    csrf = _CSRF.search(page.text)
    questions = sorted(set(_QUESTION.findall(page.text)))
    if csrf is None or not questions:
        tally.add("web", "no form")
        return
    form = {"csrf": csrf.group(1)}
    for question in questions:
        unit = question.split(".")[1]
        form[question] = draw_level(spec, profiles[unit], rng)
    if rng.random() < 0.15:
        form["comment"] = rng.choice(
            ["办事效率高，态度好。", "希望缩短排队时间。", "窗口人员解释政策很耐心。"]
        )
    answer = client.post(path, data=form)
    tally.add("web", "counted" if answer.status_code == 200 else f"http {answer.status_code}")


def _vote_by_api(
    client: TestClient,
    store: Store,
    spec: CampaignSpec,
    phones: dict[str, list[str]],
    profiles: dict[str, list[float]],
    rng: random.Random,
    tally: Tally,
) -> None:
    """
    The supervisors' liaison office forwards answers it took by phone through the JSON API,
    keyed by the supervisor's number: the same person as on the roster, so a supervisor who
    also voted on the web counts once (first answer counts; the other is kept as superseded).
    """
    key = create_api_key(store, f"demo-liaison-{rng.randrange(16**6):06x}", actor=ACTOR)
    headers = {"Authorization": f"Bearer {key}"}
    supervisors = phones.get("supervisors", [])
    sent: list[dict[str, Any]] = []
    for index, phone in enumerate(supervisors[:8]):
        answers = [
            {"unit": unit.code, "aspect": "overall", "level": draw_level(spec, profiles[unit.code], rng)}
            for unit in spec.units
        ]
        body = {
            "campaign": spec.code,
            "source_ref": f"liaison/{index:04d}",
            "respondent": {"phone": phone},
            "answers": answers,
        }
        sent.append(body)
        response = client.post(
            "/api/v1/ballots", json=body, headers=headers | {"Idempotency-Key": f"liaison-{index}"}
        )
        outcome = (
            response.json().get("outcome", f"http {response.status_code}") if response.content else "empty"
        )
        tally.add("api", str(outcome))
    # A retry of the first request (a device that timed out): the same answer, nothing added.
    if sent:
        response = client.post(
            "/api/v1/ballots", json=sent[0], headers=headers | {"Idempotency-Key": "liaison-0"}
        )
        replayed = response.headers.get("Idempotent-Replayed") == "true"
        tally.add(
            "api", "retry answered from the first response" if replayed else f"retry {response.status_code}"
        )


def _phone_survey(
    store: Store,
    spec: CampaignSpec,
    phones: dict[str, list[str]],
    profiles: dict[str, list[float]],
    rng: random.Random,
    console: Console,
    now: datetime,
) -> None:
    """
    The statistics bureau's poll centre phoned the recipients' frame and sends back a GBK CSV
    export, title row and totals row included, as such files come: imported with its profile.
    It called the drawn recipients (and, by mistake, two who were not drawn: kept as not
    sampled); a number nobody answered is quarantined with its reason.
    """
    from collect.channels.calls import load_profile_text
    from collect.imports import import_calls

    profile = load_profile_text(PHONE_PROFILE.read_text(encoding="utf-8"), str(PHONE_PROFILE))
    names = {"S01": "城东所", "S02": "城西所", "S03": "城南所", "S04": "城北所"}
    rows: list[list[str]] = []
    for index, phone in enumerate(phones.get("recipients", [])[:20]):
        called = (now - timedelta(days=2, minutes=7 * index)).astimezone(SHANGHAI)
        for unit in spec.units:
            level = draw_level(spec, profiles[unit.code], rng)
            key = str(spec.scale.level_codes.index(level) + 1)
            name = names.get(unit.code, unit.code)
            outcome = "未接通" if index == 5 else "完成"
            rows.append([f"C{index:04d}-{unit.code}", phone, f"{called:%Y/%m/%d %H:%M}", outcome, name, key])
    with tempfile.TemporaryDirectory(prefix="collect-demo-") as directory:
        path = Path(directory) / "电话调查结果.csv"
        with path.open("w", newline="", encoding="gbk") as handle:
            writer = csv.writer(handle)
            writer.writerow(["2026年基层站所满意度电话抽样调查结果（市统计局民意调查中心）"])
            writer.writerow(["呼叫编号", "手机号码", "呼叫时间", "通话结果", "测评单位", "总体评价"])
            writer.writerows(rows)
            writer.writerow(["合计", "", "", "", "", str(len(rows))])
        report = import_calls(store, spec.code, path, profile=profile, actor=ACTOR, now=now)
    reasons = ", ".join(f"{reason} {n}" for reason, n in sorted(report.by_reason.items()))
    console.print(
        f"[bold]6.[/] phone survey export (GBK CSV, {report.rows_read} rows): {report.accepted} accepted, "
        f"{report.quarantined} quarantined with their reasons ({reasons})"
    )


def print_intake(store: Store, code: str, console: Console) -> None:
    """Received and counted per channel, straight from the store."""
    with store.engine.connect() as connection:
        submissions = connection.execute(
            sa.select(SUBMISSION.c.channel, SUBMISSION.c.status, sa.func.count())
            .where(SUBMISSION.c.campaign_code == code)
            .group_by(SUBMISSION.c.channel, SUBMISSION.c.status)
            .order_by(SUBMISSION.c.channel, SUBMISSION.c.status)
        ).all()
    table = Table("channel", "submissions", "status", title="intake (every submission is kept)")
    for channel, status, number in submissions:
        table.add_row(channel, str(number), status)
    console.print(table)
