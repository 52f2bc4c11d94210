"""
SMS replies (Twilio): reading what a citizen texted, and the texts we send, in zh-CN and en.

Pure like every adapter: no database, no network, no settings. The conversation (which question
comes next) is kept by `collect.invites`; this module only says how a reply advances it, and
`SmsAdapter` turns the answers a reply completed into one `BallotSubmission` keyed by MessageSid.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Literal
from zoneinfo import ZoneInfo

from collect.ballot import Answer, BallotSubmission, Identity, Problem, Rejection
from collect.campaign import CampaignSpec, Channel
from collect.channels.base import redact

Lang = Literal["zh-CN", "en"]
Keyword = Literal["stop", "start", "help"]
Question = tuple[str, str]  # (unit, aspect)

# Above this many questions an SMS conversation gets tedious: the invitation carries the web
# ballot link instead (a campaign of 7 units × 5 aspects is 35 texts).
MAX_SMS_QUESTIONS = 10

# Twilio answers these itself (default opt-out handling) and then blocks our reply, so we
# record them and reply nothing; the Chinese ones Twilio does not know, so we confirm them.
TWILIO_STOP_WORDS = frozenset({"stop", "stopall", "unsubscribe", "cancel", "end", "quit", "optout", "revoke"})
STOP_WORDS = TWILIO_STOP_WORDS | frozenset({"退订", "td", "取消", "取消订阅", "退出"})
TWILIO_START_WORDS = frozenset({"start", "unstop", "yes"})
START_WORDS = TWILIO_START_WORDS | frozenset({"订阅", "恢复订阅"})
HELP_WORDS = frozenset({"help", "info", "帮助", "?", "？"})

# What may stand between answers: spaces and the punctuation of Chinese and Western keyboards
# (after NFKC folding, so full-width forms are already their ASCII selves).
_SEPARATORS = frozenset(" \t\r\n,、;/|\\.。!?~:-—_+*#()[]【】{}<>《》\"'“”‘’`…·")
_KEYWORD_NOISE = re.compile(r"[\s.。!！,，~～]+")
_DONT_KNOW_WORDS = ("不了解", "不知道", "不清楚", "dk", "don't know", "dont know")
# "8分" is a points answer said the Chinese way.
_POINTS_SUFFIX = "分"


# --- Reading replies ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReplyValue:
    """One answer as texted: a level code, whole points, or "don't know"."""

    level: str | None = None
    points: int | None = None
    dont_know: bool = False

    def answer(self, unit: str, aspect: str) -> Answer:
        return Answer(
            unit=unit, aspect=aspect, level=self.level, points=self.points, dont_know=self.dont_know
        )

    def as_dict(self) -> dict[str, Any]:
        return {"level": self.level, "points": self.points, "dont_know": self.dont_know}


@dataclass(frozen=True, slots=True)
class ReplyProblem:
    """Why a reply could not be read: `code` is one of empty, unrecognised, out_of_range,
    dont_know_not_offered, too_many, nothing_left."""

    code: str
    detail: str
    given: int = 0
    left: int = 0


def normalise_text(text: str) -> str:
    """NFKC (full-width digits, letters and punctuation become ASCII), lower case, one space."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    folded = "".join(ch for ch in folded if unicodedata.category(ch) != "Cf")  # zero-width marks
    return " ".join(folded.split())


def keyword(text: str) -> Keyword | None:
    """STOP/退订/TD, START, HELP/帮助 when the whole message is one of them (as Twilio matches)."""
    key = _KEYWORD_NOISE.sub("", normalise_text(text))
    if key in STOP_WORDS:
        return "stop"
    if key in START_WORDS:
        return "start"
    if key in HELP_WORDS:
        return "help"
    return None


def is_twilio_keyword(text: str) -> bool:
    """Twilio's own opt-out/opt-in words: Twilio has answered them already, so we stay silent."""
    key = _KEYWORD_NOISE.sub("", normalise_text(text))
    return key in TWILIO_STOP_WORDS or key in TWILIO_START_WORDS


def _vocabulary(spec: CampaignSpec) -> dict[str, ReplyValue]:
    """Every word or letter that names an answer (digits are read apart), lower case."""
    scale = spec.scale
    words: dict[str, ReplyValue] = {}
    for level in scale.levels:
        value = ReplyValue(level=level.code)
        for word in (level.zh, level.en, *level.sms_keys):
            key = normalise_text(word)
            if key and not key.isdigit():
                words[key] = value
    for word in (*_DONT_KNOW_WORDS, scale.dont_know_zh, scale.dont_know_en):
        key = normalise_text(word)
        if key:
            words.setdefault(key, ReplyValue(dont_know=True))
    return words


def _digit_value(spec: CampaignSpec, digit: str) -> ReplyValue | None:
    """Reply codes of a levels scale: 1 for the first level, 2 for the second…, 0 don't know."""
    index = int(digit)
    if index == 0:
        return ReplyValue(dont_know=True)
    levels = spec.scale.levels
    return ReplyValue(level=levels[index - 1].code) if index <= len(levels) else None


def parse_reply(text: str, spec: CampaignSpec) -> tuple[ReplyValue, ...] | ReplyProblem:
    """
    Read the answers in a reply, in order: "1", "１", "满意", "b", "0", "不了解", "1 2 1",
    "1，2，1", "121" (levels scales: one digit per answer), "比较满意、满意", "8 9 10" (points).

    Returns:
        The answers, or why the reply could not be read. Never raises.
    """
    source = normalise_text(text)
    scale = spec.scale
    words = _vocabulary(spec)
    keys = sorted(words, key=len, reverse=True)  # longest first: 不满意 before 满意
    values: list[ReplyValue] = []
    i = 0
    while i < len(source):
        ch = source[i]
        if ch in _SEPARATORS or ch.isspace():
            i += 1
            continue
        if "0" <= ch <= "9":
            j = i
            while j < len(source) and "0" <= source[j] <= "9":
                j += 1
            run = source[i:j]
            if scale.kind == "levels":
                for digit in run:
                    value = _digit_value(spec, digit)
                    if value is None:
                        codes = f"0–{len(scale.levels)}" if scale.dont_know else f"1–{len(scale.levels)}"
                        return ReplyProblem("out_of_range", f"{digit!r} is not a reply code ({codes})")
                    values.append(value)
            else:
                points = int(run) if len(run) <= 3 else None
                if points is None or not scale.min_points <= points <= scale.max_points:
                    return ReplyProblem(
                        "out_of_range", f"{run!r} is not a score {scale.min_points}–{scale.max_points}"
                    )
                values.append(ReplyValue(points=points))
                if source.startswith(_POINTS_SUFFIX, j):
                    j += len(_POINTS_SUFFIX)
            i = j
            continue
        match = next((key for key in keys if source.startswith(key, i)), None)
        if match is None:
            return ReplyProblem("unrecognised", f"cannot read {source[i : i + 12]!r}")
        values.append(words[match])
        i += len(match)
    if not values:
        return ReplyProblem("empty", "the reply has no answer")
    if any(v.dont_know for v in values) and not scale.dont_know:
        return ReplyProblem("dont_know_not_offered", 'this campaign does not offer "don\'t know"')
    return tuple(values)


# --- The conversation, as data ------------------------------------------------------------


def questions_for(spec: CampaignSpec, units: Sequence[str]) -> tuple[Question, ...]:
    """Unit by unit, every aspect of each: the order questions are asked and compact replies read."""
    return tuple((unit, aspect.code) for unit in units for aspect in spec.aspects)


@dataclass(frozen=True, slots=True)
class Step:
    """
    What a reply does to a conversation: `complete` holds the answers of units now fully
    answered (one ballot), `pending` those of a unit still missing aspects.
    """

    position: int
    complete: tuple[Answer, ...]
    pending: tuple[Answer, ...]
    answered: tuple[Question, ...]


def advance(
    questions: Sequence[Question], position: int, pending: Sequence[Answer], values: Sequence[ReplyValue]
) -> Step | ReplyProblem:
    """
    Give the next `len(values)` questions their answers. A reply may answer one question (the
    conversation) or several at once (a compact reply); never more than are left.
    """
    left = len(questions) - position
    if left <= 0:
        return ReplyProblem("nothing_left", "every question is answered already")
    if len(values) > left:
        return ReplyProblem(
            "too_many", f"{len(values)} answers for {left} question(s) left", given=len(values), left=left
        )
    answered = tuple(questions[position : position + len(values)])
    given = [*pending, *(v.answer(unit, aspect) for (unit, aspect), v in zip(answered, values, strict=True))]
    new_position = position + len(values)
    # Questions run unit by unit, so a unit is complete once its last question is behind us.
    open_units = {unit for unit, _aspect in questions[new_position:]}
    return Step(
        position=new_position,
        complete=tuple(a for a in given if a.unit not in open_units),
        pending=tuple(a for a in given if a.unit in open_units),
        answered=answered,
    )


def answers_to_json(answers: Sequence[Answer]) -> list[dict[str, Any]]:
    return [
        {"unit": a.unit, "aspect": a.aspect, "level": a.level, "points": a.points, "dont_know": a.dont_know}
        for a in answers
    ]


def answers_from_json(rows: Sequence[Mapping[str, Any]] | None) -> tuple[Answer, ...]:
    return tuple(
        Answer(
            unit=str(r["unit"]),
            aspect=str(r["aspect"]),
            level=r.get("level"),
            points=r.get("points"),
            dont_know=bool(r.get("dont_know")),
        )
        for r in rows or ()
    )


# --- The adapter ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InboundSms:
    """
    One verified reply and the answers it completed (worked out against the conversation).

    Args:
        sender: the From number in E.164; it becomes the ballot's phone identity, which ingest()
            keys (so it reaches no table) and matches to the roster respondent.
        form: the webhook's parameters as posted; personal ones are redacted before keeping.
    """

    message_sid: str
    sender: str
    form: Mapping[str, str]
    received_at: datetime
    answers: tuple[Answer, ...] = ()


class SmsAdapter:
    channel: ClassVar[Channel] = "sms"
    # The number is the respondent's identity; the Twilio geo fields point at where they live.
    personal_fields: ClassVar[frozenset[str]] = frozenset({"From", "FromCity", "FromState", "FromZip"})

    def parse(self, raw: InboundSms, spec: CampaignSpec) -> Iterator[BallotSubmission | Rejection]:
        kept = redact(dict(raw.form), self.personal_fields)
        if not raw.answers:
            yield Rejection(
                campaign=spec.code,
                channel=self.channel,
                source_ref=raw.message_sid,
                problems=(Problem("Body", "no_answers", "the reply completed no unit"),),
                received_at=raw.received_at,
                raw=kept,
            )
            return
        yield BallotSubmission(
            campaign=spec.code,
            channel=self.channel,
            source_ref=raw.message_sid,
            identity=Identity("phone", raw.sender),
            answers=raw.answers,
            # Twilio posts no send time: the SMS's arrival is when the respondent answered.
            answered_at=raw.received_at,
            received_at=raw.received_at,
            raw=kept,
            meta={"message_sid": raw.message_sid},
        )

    @classmethod
    def refusal(
        cls,
        campaign: str,
        form: Mapping[str, str],
        problem: Problem,
        received_at: datetime,
        *,
        source_ref: str | None = None,
    ) -> Rejection:
        """A delivery kept but never counted: bad signature, unknown sender, after close…"""
        sid = form.get("MessageSid") or form.get("SmsSid") or "no-sid"
        return Rejection(
            campaign=campaign,
            channel=cls.channel,
            source_ref=(source_ref or sid)[:255],
            problems=(problem,),
            received_at=received_at,
            raw=redact(dict(form), cls.personal_fields),
        )

    @classmethod
    def bad_signature(
        cls, campaign: str, form: Mapping[str, str], received_at: datetime, detail: str
    ) -> Rejection:
        """
        An unsigned or wrongly signed post. Its own source_ref, so a forgery reusing a genuine
        MessageSid is kept beside the genuine reply instead of colliding with it.
        """
        sid = form.get("MessageSid") or "no-sid"
        return cls.refusal(
            campaign,
            form,
            Problem("X-Twilio-Signature", "signature", detail),
            received_at,
            source_ref=f"{sid}#unsigned",
        )


# --- What we text ---------------------------------------------------------------------------

_TEXTS: dict[str, dict[str, str]] = {
    "zh-CN": {
        "invite": "【{name}】您好！诚邀您参加满意度测评，共{n}题。",
        "compact": "可逐题回复，也可一次回复全部答案（用空格分开），如“{example}”。",
        "question": "第{i}/{n}题：请评价“{unit}”{aspect}，回复{codes}。",
        "aspect": "的{aspect}",
        "opt_out": "回复TD退订。",
        "reminder": "【{name}】提醒：您的测评尚未完成（已答{done}/{n}题）。",
        "link": "【{name}】您好！诚邀您参加满意度测评，请点击链接填写：{url} 回复TD退订。",
        "link_reminder": "【{name}】提醒：您的测评尚未完成，请点击链接填写：{url} 回复TD退订。",
        "link_reply": "本次测评题目较多，请点击邀请短信中的链接填写，谢谢！",
        "recorded": "已记录。",
        "thanks": "感谢您的评价！回执号{receipt}。",
        "already": "您已评价过“{unit}”，以您先前的评价为准。",
        "later": "您对“{unit}”有更晚的评价，以该评价为准。",
        "not_sampled": "感谢参与！您不在本轮抽样范围内，评价不计入结果。",
        "refused": "抱歉，您对“{unit}”的回复未能计入。",
        "unclear": "抱歉，未能识别您的回复。",
        "too_many": "您回复了{given}个答案，但只剩{left}题。",
        "not_offered": "本次测评没有“不了解”选项。",
        "help": "请回复{codes}；多题可一次回复，用空格分开，如“{example}”。回复TD退订。",
        "help_one": "请回复{codes}。回复TD退订。",
        "done": "您已完成本次测评，感谢参与！",
        "closed": "【{name}】测评已于{date}结束，您的回复未计入。感谢您的关注！",
        "not_open": "【{name}】测评将于{date}开始，届时欢迎回复。",
        "unknown": "抱歉，未找到本号码的测评邀请。如有疑问，请联系测评组织单位。",
        "stopped": "您已退订，不会再收到测评短信。如需恢复，请回复“订阅”。",
        "started": "您已恢复接收测评短信。",
        "level_code": "{code}{label}",
        "level_join": " ",
        "points": "{low}-{high}分",
        "points_dk": "，不了解请回复“不了解”",
    },
    "en": {
        "invite": "[{name}] You are invited to a satisfaction survey: {n} question(s).",
        "compact": 'Answer one at a time or all at once, separated by spaces, e.g. "{example}".',
        "question": 'Q{i}/{n}: how do you rate "{unit}"{aspect}? Reply {codes}.',
        "aspect": " on {aspect}",
        "opt_out": "Reply STOP to opt out.",
        "reminder": "[{name}] Reminder: your survey is not finished ({done}/{n} answered).",
        "link": "[{name}] You are invited to a satisfaction survey. Please answer here: {url} "
        "Reply STOP to opt out.",
        "link_reminder": "[{name}] Reminder: your survey is not finished. Please answer here: {url} "
        "Reply STOP to opt out.",
        "link_reply": "This survey has many questions: please answer through the link in our invitation. "
        "Thank you!",
        "recorded": "Noted.",
        "thanks": "Thank you for your answers! Receipt {receipt}.",
        "already": 'You have already answered for "{unit}": your earlier answer counts.',
        "later": 'You answered "{unit}" later as well: that later answer counts.',
        "not_sampled": "Thank you! You are not in this round's sample, so your answers are not counted.",
        "refused": 'Sorry, your answer for "{unit}" could not be counted.',
        "unclear": "Sorry, we could not read your reply.",
        "too_many": "You sent {given} answers but only {left} question(s) are left.",
        "not_offered": 'This survey has no "don\'t know" answer.',
        "help": 'Reply {codes}. Several answers at once: separate them by spaces, e.g. "{example}". '
        "Reply STOP to opt out.",
        "help_one": "Reply {codes}. Reply STOP to opt out.",
        "done": "You have answered every question. Thank you!",
        "closed": "[{name}] The survey closed on {date}; your reply was not counted. "
        "Thank you for your interest!",
        "not_open": "[{name}] The survey opens on {date}; please reply then.",
        "unknown": "Sorry, we found no survey invitation for this number. Please contact the organisers.",
        "stopped": "You will receive no more survey messages. Reply START to receive them again.",
        "started": "You will receive survey messages again.",
        "level_code": "{code} {label}",
        "level_join": ", ",
        "points": "a score {low}-{high}",
        "points_dk": ', or "DK" if you don\'t know',
    },
}


def lang_of(spec: CampaignSpec) -> Lang:
    return spec.lang


def text(lang: str, key: str, **values: object) -> str:
    """One text of the catalogue in `lang` (zh-CN when unknown), filled in."""
    catalogue = _TEXTS.get(lang, _TEXTS["zh-CN"])
    return catalogue[key].format(**values)


def reply_codes(spec: CampaignSpec) -> str:
    """ "1满意 2比较满意 3基本满意 4不太满意 5不满意 0不了解" (or "0-10分…" for a points scale)."""
    lang, scale = spec.lang, spec.scale
    zh = lang == "zh-CN"
    if scale.kind == "points":
        codes = text(lang, "points", low=scale.min_points, high=scale.max_points)
        return codes + (text(lang, "points_dk") if scale.dont_know else "")
    parts = [
        text(lang, "level_code", code=i, label=level.zh if zh else level.en)
        for i, level in enumerate(scale.levels, start=1)
    ]
    if scale.dont_know:
        parts.append(text(lang, "level_code", code=0, label=scale.dont_know_zh if zh else scale.dont_know_en))
    return text(lang, "level_join").join(parts)


def example_reply(spec: CampaignSpec, n: int) -> str:
    pattern = ["8", "9", "10"] if spec.scale.kind == "points" else ["1", "2", "1"]
    return " ".join((pattern * 4)[: max(2, min(n, 3))])


def question_text(spec: CampaignSpec, questions: Sequence[Question], position: int) -> str:
    unit_code, aspect_code = questions[position]
    unit = spec.unit(unit_code)
    aspect = spec.aspect(aspect_code)
    lang = spec.lang
    aspect_text = ""
    if len(spec.aspects) > 1 and aspect is not None:
        aspect_text = text(lang, "aspect", aspect=aspect.zh if lang == "zh-CN" else (aspect.en or aspect.zh))
    return text(
        lang,
        "question",
        i=position + 1,
        n=len(questions),
        unit=unit.name if unit is not None else unit_code,
        aspect=aspect_text,
        codes=reply_codes(spec),
    )


def invite_text(spec: CampaignSpec, questions: Sequence[Question]) -> str:
    n = len(questions)
    parts = [text(spec.lang, "invite", name=spec.name, n=n)]
    if n > 1:
        parts.append(text(spec.lang, "compact", example=example_reply(spec, n)))
    parts.append(question_text(spec, questions, 0))
    parts.append(text(spec.lang, "opt_out"))
    return _join(spec.lang, parts)


def reminder_text(spec: CampaignSpec, questions: Sequence[Question], position: int) -> str:
    parts = [
        text(spec.lang, "reminder", name=spec.name, done=position, n=len(questions)),
        question_text(spec, questions, position),
        text(spec.lang, "opt_out"),
    ]
    return _join(spec.lang, parts)


def link_text(spec: CampaignSpec, url: str, *, reminder: bool = False) -> str:
    return text(spec.lang, "link_reminder" if reminder else "link", name=spec.name, url=url)


def help_text(spec: CampaignSpec, questions: Sequence[Question], position: int) -> str:
    left = len(questions) - position
    codes = reply_codes(spec)
    if left > 1:
        head = text(spec.lang, "help", codes=codes, example=example_reply(spec, left))
    else:
        head = text(spec.lang, "help_one", codes=codes)
    if 0 <= position < len(questions):
        return _join(spec.lang, [head, question_text(spec, questions, position)])
    return head


def problem_text(spec: CampaignSpec, problem: ReplyProblem) -> str:
    if problem.code == "too_many":
        return text(spec.lang, "too_many", given=problem.given, left=problem.left)
    if problem.code == "dont_know_not_offered":
        return text(spec.lang, "not_offered")
    return text(spec.lang, "unclear")


def local_date(spec: CampaignSpec, when: datetime) -> str:
    return when.astimezone(ZoneInfo(spec.timezone)).strftime("%Y-%m-%d")


def unit_name(spec: CampaignSpec, code: str) -> str:
    unit = spec.unit(code)
    return unit.name if unit is not None else code


def join_texts(lang: str, parts: Sequence[str]) -> str:
    return _join(lang, parts)


def _join(lang: str, parts: Sequence[str]) -> str:
    # Chinese sentences run on without spaces; English ones need one.
    return ("" if lang == "zh-CN" else " ").join(p for p in parts if p)


def segments(body: str) -> int:
    """SMS segments Twilio will bill: GSM-7 160/153 per part, UCS-2 (any Chinese) 70/67."""
    ucs2 = any(ord(ch) > 0x7F for ch in body)
    single, multi = (70, 67) if ucs2 else (160, 153)
    length = len(body)
    return 1 if length <= single else -(-length // multi)
