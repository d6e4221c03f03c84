"""The result store: where workflows and steps live. One interface, SQLAlchemy behind it."""

from common.store.interface import Created, RecordResult, StaleStep, StopResult, Store
from common.store.sql import SqlStore, open_store

__all__ = ["Created", "RecordResult", "SqlStore", "StaleStep", "StopResult", "Store", "open_store"]
