"""What every command needs: settings and the store, opened on first use."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeVar

import click

from collect.settings import Settings
from collect.store import Store

F = TypeVar("F")


@dataclass
class AppContext:
    settings_overrides: dict[str, Any] = field(default_factory=dict)
    _settings: Settings | None = None
    _store: Store | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = Settings(**self.settings_overrides)
        return self._settings

    @property
    def store(self) -> Store:
        """The store, migrated to head on first use (contract.md: every command upgrades)."""
        if self._store is None:
            from collect.store.migrate import ensure_current

            store = Store(self.settings)
            try:
                store.ping()
            except Exception:
                store.dispose()
                raise
            ensure_current(store.engine)
            self._store = store
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.dispose()
            self._store = None

    def store_unmigrated(self) -> Store:
        """The store without the automatic upgrade (for `collect db` itself)."""
        if self._store is None:
            self._store = Store(self.settings)
        return self._store


pass_app = click.make_pass_decorator(AppContext)
