"""
Every COLLECT_* (and TWILIO_*) variable, typed. Read once at startup and passed down; nothing
else reads os.environ. A `.env` file in the working directory is read too.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

# Used only by `collect demo` and the tests: a demo database is not a campaign's.
DEMO_SECRET_KEY = "demo-only-secret-key-do-not-use-in-production"


class MissingSecretKey(RuntimeError):
    """COLLECT_SECRET_KEY is required outside the demo: it keys every respondent hash."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="COLLECT_", env_file=".env", extra="ignore", frozen=True)

    database_url: str = "sqlite:///collect.db"
    # Keys respondent hashes, ballot tokens, serials and cookies: changing it splits every respondent.
    secret_key: SecretStr | None = None
    # Base of every printed/texted link and of Twilio signature checks (never the request's own URL).
    public_url: str = "http://127.0.0.1:8000"
    lang: Literal["zh-CN", "en"] = "zh-CN"
    log_level: str = "INFO"
    # json (one object per line, for a log shipper) or text; unset: text at a terminal, else json.
    log_format: Literal["json", "text"] | None = None
    # Required as `Authorization: Bearer …` on GET /metrics when set.
    metrics_token: SecretStr | None = None
    # SQLite durability: NORMAL survives a process crash; FULL also a power loss, at a write cost.
    sqlite_synchronous: Literal["NORMAL", "FULL"] = "NORMAL"
    twilio_account_sid: str | None = Field(
        default=None, validation_alias=AliasChoices("TWILIO_ACCOUNT_SID", "COLLECT_TWILIO_ACCOUNT_SID")
    )
    twilio_auth_token: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("TWILIO_AUTH_TOKEN", "COLLECT_TWILIO_AUTH_TOKEN")
    )
    twilio_messaging_service_sid: str | None = Field(
        default=None,
        validation_alias=AliasChoices("TWILIO_MESSAGING_SERVICE_SID", "COLLECT_TWILIO_MESSAGING_SERVICE_SID"),
    )

    def secret(self) -> bytes:
        """The secret key as bytes; refuses to run without one."""
        if self.secret_key is None or not self.secret_key.get_secret_value():
            raise MissingSecretKey(
                "COLLECT_SECRET_KEY is not set: set it to a long random value (e.g. `python -c "
                "'import secrets; print(secrets.token_urlsafe(48))'`) and keep it: changing it "
                "makes every respondent a new person"
            )
        return self.secret_key.get_secret_value().encode()

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")
