"""The result store: where workflows and steps live. One interface, SQLAlchemy behind it."""

from common.store.interface import Created, RecordResult, StaleStep, StopResult, Store
from common.store.sql import Pool, SqlStore, open_store

__all__ = ["Created", "Pool", "RecordResult", "SqlStore", "StaleStep", "StopResult", "Store", "open_store"]
