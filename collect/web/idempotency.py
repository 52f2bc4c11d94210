"""
`Idempotency-Key` for the JSON API: the first response to (API key, Idempotency-Key) is kept;
a retry with the same body gets it again, a reuse with another body gets 409.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from collect.store import Store
from collect.store.tables import IDEMPOTENCY, utcnow

KEY_MAX = 255


@dataclass(frozen=True, slots=True)
class StoredResponse:
    body_sha256: str
    status_code: int
    body: str


def find(store: Store, api_key_id: int, key: str) -> StoredResponse | None:
    with store.reader.connect() as connection:
        row = connection.execute(
            sa.select(
                IDEMPOTENCY.c.body_sha256, IDEMPOTENCY.c.status_code, IDEMPOTENCY.c.response_body
            ).where(IDEMPOTENCY.c.api_key_id == api_key_id, IDEMPOTENCY.c.key == key)
        ).first()
    return None if row is None else StoredResponse(row.body_sha256, row.status_code, row.response_body)


def remember(store: Store, api_key_id: int, key: str, response: StoredResponse) -> StoredResponse:
    """
    Keep a response; when a concurrent request with the same key got there first, return
    what it kept instead, so both callers see one answer.
    """
    try:
        with store.engine.begin() as connection:
            connection.execute(
                sa.insert(IDEMPOTENCY).values(
                    api_key_id=api_key_id,
                    key=key,
                    body_sha256=response.body_sha256,
                    status_code=response.status_code,
                    response_body=response.body,
                    created_at=utcnow(),
                )
            )
    except sa.exc.IntegrityError:
        # uq_idempotency_key: the other request won; its response is the response.
        winner = find(store, api_key_id, key)
        if winner is None:
            raise
        return winner
    return response
