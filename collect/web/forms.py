"""Reading posted forms: bounded, one value per field, text only."""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.datastructures import UploadFile
from starlette.requests import ClientDisconnect, Request

MAX_FIELDS = 2000  # a ballot of 43 units × 5 aspects is 215 fields; far more is not a ballot


class BadForm(ValueError):
    """A body that is not a form we can read (wrong type, undecodable, too many fields)."""


async def read_form(request: Request) -> dict[str, str]:
    """
    The posted fields (first value of each). The body is capped by `BodyLimit` before it is
    read; file parts are refused here (upload pages read `request.form()` with their own caps).
    """
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        form = await request.form(max_files=0, max_fields=MAX_FIELDS)
        out: dict[str, str] = {}
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                raise BadForm("file uploads are not accepted here")
            out.setdefault(key, value)
        return out
    if kind not in ("application/x-www-form-urlencoded", ""):
        raise BadForm(f"expected a form, got {kind!r}")
    try:
        body = await request.body()
    except ClientDisconnect as exc:
        raise BadForm("the client went away before the form arrived") from exc
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_FIELDS)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadForm(str(exc)) from exc
    fields: dict[str, str] = {}
    for key, value in pairs:
        fields.setdefault(key, value)
    return fields
