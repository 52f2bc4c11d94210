"""The store: engine setup, tables and migrations. Only `collect.ingest` writes ballots."""

from collect.store.engine import Store, make_engine

__all__ = ["Store", "make_engine"]
