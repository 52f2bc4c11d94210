"""
`Idempotency-Key` for the JSON API: the first response to (API key, Idempotency-Key) is kept;
a retry with the same body gets it again, a reuse with another body gets 409.

Both functions run on the connection of the ballot's own transaction, so the kept response
commits with the ballot or not at all: a crash between the two cannot leave a ballot whose
retry would be ingested again under a response nobody kept.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from collect.store.tables import IDEMPOTENCY, utcnow

KEY_MAX = 255

_FIND = sa.select(IDEMPOTENCY.c.body_sha256, IDEMPOTENCY.c.status_code, IDEMPOTENCY.c.response_body).where(
    IDEMPOTENCY.c.api_key_id == sa.bindparam("api_key_id"), IDEMPOTENCY.c.key == sa.bindparam("key")
)
_KEEP = sa.insert(IDEMPOTENCY)


@dataclass(frozen=True, slots=True)
class StoredResponse:
    body_sha256: str
    status_code: int
    body: str


def find(connection: Connection, api_key_id: int, key: str) -> StoredResponse | None:
    row = connection.execute(_FIND, {"api_key_id": api_key_id, "key": key}).first()
    return None if row is None else StoredResponse(row.body_sha256, row.status_code, row.response_body)


def find_many(connection: Connection, keys: list[tuple[int, str]]) -> dict[tuple[int, str], StoredResponse]:
    """The kept responses of many (API key, Idempotency-Key) pairs, in one query."""
    if not keys:
        return {}
    rows = connection.execute(
        sa.select(
            IDEMPOTENCY.c.api_key_id,
            IDEMPOTENCY.c.key,
            IDEMPOTENCY.c.body_sha256,
            IDEMPOTENCY.c.status_code,
            IDEMPOTENCY.c.response_body,
        ).where(sa.tuple_(IDEMPOTENCY.c.api_key_id, IDEMPOTENCY.c.key).in_(keys))
    )
    return {
        (row.api_key_id, row.key): StoredResponse(row.body_sha256, row.status_code, row.response_body)
        for row in rows
    }


def keep_many(connection: Connection, kept: list[tuple[int, str, StoredResponse]]) -> None:
    """
    Keep responses, in one statement. A concurrent request with the same key that committed
    first makes this raise IntegrityError (uq_idempotency_key): the caller rolls back and runs
    again, and then find() returns the winner's response, so both callers see one answer.
    """
    if not kept:
        return
    now = utcnow()
    connection.execute(
        _KEEP,
        [
            {
                "api_key_id": api_key_id,
                "key": key,
                "body_sha256": response.body_sha256,
                "status_code": response.status_code,
                "response_body": response.body,
                "created_at": now,
            }
            for api_key_id, key, response in kept
        ],
    )
