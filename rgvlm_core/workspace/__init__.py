"""The workspace: a folder the app, the CLI and background jobs share (see store.py)."""

from rgvlm_core.workspace.schema import TABLES, TableSpec
from rgvlm_core.workspace.store import Snapshot, StoreReader, Workspace

__all__ = ["TABLES", "Snapshot", "StoreReader", "TableSpec", "Workspace"]
