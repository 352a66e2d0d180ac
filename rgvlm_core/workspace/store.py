"""The workspace store: immutable Parquet shards plus one atomically replaced snapshot file.

Layout of a workspace folder:
    workspace.json                   format marker and version of the folder layout
    store/HEAD.json                  the snapshot: per table, its schema version and its shard files
    store/data/<table>/v<N>/*.parquet immutable shards, written to a temp name then renamed
    store/commit.lock, store/locks/  advisory locks (flock), held for milliseconds to seconds

A commit writes its shards first, then, under the commit lock, replaces HEAD.json by rename. A
process killed at any instant therefore leaves either the old or the new snapshot; its orphan shards
are invisible and `collect_garbage` removes them. Readers never lock: they read HEAD.json and query
its files through an in-memory DuckDB, so no process ever holds a database file open.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from rgvlm_core.errors import WorkspaceError, os_reason
from rgvlm_core.workspace.files import (
    atomic_write_bytes,
    file_lock,
    fsync_dir,
    pause_point,
    pid_alive,
    temp_name,
)
from rgvlm_core.workspace.schema import MIGRATIONS, TABLES, TableSpec

_PATH_HINT = "choose a folder you can read and write (-w/--workspace or RGVLM_WORKSPACE)"

log = logging.getLogger(__name__)

FORMAT = "rgvlm-workspace"
FORMAT_VERSION = 1
MARKER = "workspace.json"
ROW_GROUP_ROWS = 16_384
GARBAGE_GRACE_S = 600.0  # superseded shards stay readable this long for readers on an old snapshot
ORPHAN_AGE_S = 6 * 3600.0  # unreferenced shards of a live writer are kept this long


@dataclass(frozen=True)
class TableState:
    """One table in a snapshot: the schema version its shards were written with, and the shards."""

    schema_version: int
    files: tuple[str, ...] = ()


@dataclass(frozen=True)
class Snapshot:
    """An immutable view of the store at one version; what every read sees from start to end."""

    version: int
    tables: Mapping[str, TableState] = field(default_factory=dict)
    garbage: tuple[tuple[str, float], ...] = ()

    def files(self, table: str) -> tuple[str, ...]:
        state = self.tables.get(table)
        return state.files if state else ()

    def to_json(self) -> bytes:
        doc = {
            "version": self.version,
            "tables": {
                name: {"schema_version": st.schema_version, "files": list(st.files)}
                for name, st in sorted(self.tables.items())
            },
            "garbage": [[path, since] for path, since in self.garbage],
            "written_at": time.time(),
        }
        return json.dumps(doc, indent=1).encode()

    @classmethod
    def from_json(cls, raw: bytes, source: Path) -> Snapshot:
        try:
            doc = json.loads(raw)
            tables = {
                name: TableState(int(st["schema_version"]), tuple(st["files"]))
                for name, st in doc["tables"].items()
            }
            garbage = tuple((str(p), float(s)) for p, s in doc.get("garbage", []))
            return cls(int(doc["version"]), tables, garbage)
        except (ValueError, KeyError, TypeError) as exc:
            raise WorkspaceError(
                f"{source}: unreadable store snapshot ({exc}); restore it from a backup"
            ) from exc


class Workspace:
    """A workspace folder; cheap to construct, safe to use from many processes at once."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self.store_dir = self.root / "store"
        self.head_path = self.store_dir / "HEAD.json"

    # -- opening -----------------------------------------------------------------------------
    @classmethod
    def open(cls, root: Path | str, *, create: bool = True) -> Workspace:
        """Open (and, if allowed, create) a workspace; refuses folders that are something else.

        A path that cannot be a workspace (a file, a folder below a file, one we may not read or write)
        is a WorkspaceError naming it, for every caller: the CLI and the dashboard alike.
        """
        ws = cls(Path(root))
        if ws.root.exists() and not ws.root.is_dir():
            raise WorkspaceError(f"{ws.root}: is a file, not a workspace folder; {_PATH_HINT}")
        try:
            return cls._open(ws, create)
        except OSError as exc:
            raise WorkspaceError(
                f"{ws.root}: cannot open the workspace ({os_reason(exc)}); {_PATH_HINT}"
            ) from None

    @staticmethod
    def _open(ws: Workspace, create: bool) -> Workspace:
        marker = ws.root / MARKER
        if not marker.exists():
            if not create:
                raise WorkspaceError(f"{ws.root}: no workspace here (no {MARKER}); run `rgvlm import` first")
            if ws.root.exists() and any(ws.root.iterdir()):
                raise WorkspaceError(
                    f"{ws.root}: folder exists and is not an rgvlm workspace (no {MARKER}); "
                    "choose an empty or new folder"
                )
            ws._create()
        ws._check_marker(marker)
        return ws

    def _create(self) -> None:
        (self.store_dir / "data").mkdir(parents=True, exist_ok=True)
        with file_lock(self.store_dir / "commit.lock"):
            if not self.head_path.exists():
                atomic_write_bytes(self.head_path, Snapshot(0).to_json())
            marker = self.root / MARKER
            if not marker.exists():
                doc = {"format": FORMAT, "format_version": FORMAT_VERSION, "created_at": time.time()}
                atomic_write_bytes(marker, json.dumps(doc, indent=1).encode())

    def _check_marker(self, marker: Path) -> None:
        try:
            doc = json.loads(marker.read_bytes())
            fmt, version = doc["format"], int(doc["format_version"])
        except (ValueError, KeyError, TypeError) as exc:
            raise WorkspaceError(f"{marker}: not a valid workspace marker ({exc})") from exc
        if fmt != FORMAT:
            raise WorkspaceError(f"{marker}: format {fmt!r} is not {FORMAT!r}")
        if version > FORMAT_VERSION:
            raise WorkspaceError(
                f"{marker}: workspace format v{version} is newer than this rgvlm "
                f"(v{FORMAT_VERSION}); upgrade rgvlm"
            )

    # -- reading -----------------------------------------------------------------------------
    def snapshot(self, *, check_versions: bool = True) -> Snapshot:
        """The current snapshot; raises when a table's schema is one this code cannot read."""
        try:
            raw = self.head_path.read_bytes()
        except FileNotFoundError as exc:
            raise WorkspaceError(f"{self.head_path}: missing; the workspace is damaged") from exc
        snap = Snapshot.from_json(raw, self.head_path)
        if check_versions:
            for name, state in snap.tables.items():
                spec = TABLES.get(name)
                if spec is not None:
                    _check_schema_version(spec, state.schema_version)
        return snap

    def path_of(self, relative: str) -> Path:
        return self.store_dir / relative

    def reader(self) -> StoreReader:
        """A reader that follows new snapshots; keep one per process (or thread) and reuse it."""
        return StoreReader(self)

    # -- writing -----------------------------------------------------------------------------
    @contextmanager
    def lock(self, name: str, *, timeout_s: float = 600.0) -> Iterator[None]:
        """A named lock for read-check-write sequences (e.g. idempotent import of a batch)."""
        with file_lock(self.store_dir / "locks" / f"{name}.lock", timeout_s=timeout_s):
            yield

    def commit(self, tables: Mapping[str, pa.Table], *, message: str = "") -> Snapshot:
        """Append rows to tables atomically: all of them become visible together, or none do."""
        written: list[tuple[str, str]] = []
        for name, table in tables.items():
            if table.num_rows == 0:
                continue
            spec = _spec(name)
            written.append((name, self._write_shard(spec, table)))
        pause_point("commit-shards-written")
        if not written:
            return self.snapshot()
        with file_lock(self.store_dir / "commit.lock"):
            snap = self.snapshot()
            tables_state = dict(snap.tables)
            for name, rel in written:
                spec = TABLES[name]
                prior = tables_state.get(name, TableState(spec.version))
                tables_state[name] = TableState(spec.version, (*prior.files, rel))
            new = Snapshot(snap.version + 1, tables_state, snap.garbage)
            atomic_write_bytes(self.head_path, new.to_json())
        log.debug("commit v%d %s: %s", new.version, message, [n for n, _ in written])
        return new

    def _write_shard(self, spec: TableSpec, table: pa.Table) -> str:
        """Write one immutable shard (sorted, versioned, with metadata) and return its store path."""
        table = _conform(spec, table)
        if spec.sort_by:
            table = table.sort_by([(col, "ascending") for col in spec.sort_by])
        rel_dir = Path("data") / spec.name / f"v{spec.version}"
        final = self.store_dir / rel_dir / f"{time.time_ns()}-{os.getpid()}-{uuid.uuid4().hex[:8]}.parquet"
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_name(final)
        meta = {b"rgvlm.table": spec.name.encode(), b"rgvlm.schema_version": str(spec.version).encode()}
        schema = table.schema.with_metadata(meta)
        with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
            for start in range(0, max(table.num_rows, 1), ROW_GROUP_ROWS):
                writer.write_table(table.slice(start, ROW_GROUP_ROWS).replace_schema_metadata(meta))
                pause_point("shard-mid-write")
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, final)
        fsync_dir(final.parent)
        return str(rel_dir / final.name)

    # -- maintenance -------------------------------------------------------------------------
    def compact(self, table: str) -> bool:
        """Merge a table's shards into one; concurrent appends are kept, concurrent readers unharmed."""
        spec = _spec(table)
        with self.lock(f"compact-{table}"):
            before = self.snapshot().files(table)
            if len(before) < 2:
                return False
            merged = pq.read_table([str(self.path_of(f)) for f in before], schema=spec.schema)
            rel = self._write_shard(spec, merged)
            with file_lock(self.store_dir / "commit.lock"):
                snap = self.snapshot()
                current = snap.files(table)
                if current[: len(before)] != before:
                    raise WorkspaceError(f"{table}: shards changed during compaction; run it again")
                tables_state = dict(snap.tables)
                tables_state[table] = TableState(spec.version, (rel, *current[len(before) :]))
                now = time.time()
                garbage = snap.garbage + tuple((f, now) for f in before)
                atomic_write_bytes(
                    self.head_path, Snapshot(snap.version + 1, tables_state, garbage).to_json()
                )
        return True

    def migrate(self) -> dict[str, tuple[int, int]]:
        """Rewrite every table stored under an older schema to this code's, through `MIGRATIONS`.

        Each table's shards are read, upgraded one version at a time, written as one new shard and
        swapped in under the commit lock (old shards go to the garbage list, so readers on the old
        snapshot are unharmed); a table with no migration path raises before anything is written.
        Returns {table: (from version, to version)} of the tables rewritten.
        """
        done: dict[str, tuple[int, int]] = {}
        with self.lock("migrate"):
            snap = self.snapshot(check_versions=False)
            for name, state in snap.tables.items():
                spec = TABLES.get(name)
                if spec is None or state.schema_version >= spec.version:
                    continue
                steps = range(state.schema_version, spec.version)
                missing = [v for v in steps if (name, v) not in MIGRATIONS]
                if missing:
                    raise WorkspaceError(
                        f"table {name!r} has schema v{state.schema_version} and no migration from "
                        f"v{missing[0]}; re-import it into a new workspace"
                    )
            for name, state in snap.tables.items():
                spec = TABLES.get(name)
                if spec is None or state.schema_version >= spec.version:
                    continue
                parts = [pq.read_table(str(self.path_of(f))) for f in state.files]
                for version in range(state.schema_version, spec.version):
                    parts = [MIGRATIONS[(name, version)](part) for part in parts]
                merged = pa.concat_tables([_conform(spec, part) for part in parts]) if parts else spec.empty()
                written = (self._write_shard(spec, merged),) if merged.num_rows else ()
                with file_lock(self.store_dir / "commit.lock"):
                    now_snap = self.snapshot(check_versions=False)
                    current = now_snap.files(name)
                    if current != state.files:
                        raise WorkspaceError(f"{name}: shards changed during migration; run it again")
                    tables_state = dict(now_snap.tables)
                    tables_state[name] = TableState(spec.version, written)
                    garbage = now_snap.garbage + tuple((f, time.time()) for f in state.files)
                    atomic_write_bytes(
                        self.head_path, Snapshot(now_snap.version + 1, tables_state, garbage).to_json()
                    )
                done[name] = (state.schema_version, spec.version)
        return done

    def collect_garbage(self, *, grace_s: float = GARBAGE_GRACE_S) -> int:
        """Delete superseded shards past their grace period and orphans of dead writers."""
        removed = 0
        with file_lock(self.store_dir / "commit.lock"):
            snap = self.snapshot(check_versions=False)
            now = time.time()
            keep: list[tuple[str, float]] = []
            for rel, since in snap.garbage:
                if now - since >= grace_s:
                    self.path_of(rel).unlink(missing_ok=True)
                    removed += 1
                else:
                    keep.append((rel, since))
            if len(keep) != len(snap.garbage):
                atomic_write_bytes(
                    self.head_path, Snapshot(snap.version + 1, snap.tables, tuple(keep)).to_json()
                )
            referenced = {f for st in snap.tables.values() for f in st.files} | {f for f, _ in keep}
            for path in (self.store_dir / "data").rglob("*"):
                if path.is_file() and self._is_orphan(path, referenced, now):
                    path.unlink(missing_ok=True)
                    removed += 1
        return removed

    def _is_orphan(self, path: Path, referenced: set[str], now: float) -> bool:
        rel = str(path.relative_to(self.store_dir))
        if rel in referenced:
            return False
        name = path.name
        try:
            pid = int(name.split(".tmp-")[1].split("-")[0]) if ".tmp-" in name else int(name.split("-")[1])
        except (IndexError, ValueError):
            return False
        return not pid_alive(pid) or now - path.stat().st_mtime > ORPHAN_AGE_S


class StoreReader:
    """SQL over the latest snapshot through an in-memory DuckDB with one view per table.

    Views are rebuilt only when HEAD.json changes, so repeated small queries (the app's frame
    stepping) cost one stat and the query itself. Thread-safe: one query at a time.
    """

    def __init__(self, workspace: Workspace) -> None:
        import duckdb

        self.workspace = workspace
        self._con = duckdb.connect(":memory:", config={"threads": 2})
        self._con.execute("SET enable_object_cache = true")
        self._lock = threading.Lock()
        self._head_stamp: tuple[int, int, int] | None = None
        self.snapshot: Snapshot = Snapshot(-1)

    def refresh(self) -> Snapshot:
        """Follow HEAD.json if it changed since the last query."""
        stat = self.workspace.head_path.stat()
        stamp = (stat.st_mtime_ns, stat.st_ino, stat.st_size)
        if stamp != self._head_stamp:
            snap = self.workspace.snapshot()
            self._build_views(snap)
            self.snapshot, self._head_stamp = snap, stamp
        return self.snapshot

    def _build_views(self, snap: Snapshot) -> None:
        for name, spec in TABLES.items():
            files = snap.files(name)
            self._con.execute(f'DROP VIEW IF EXISTS "{name}"')
            if files:
                paths = ", ".join(_sql_str(str(self.workspace.path_of(f))) for f in files)
                self._con.execute(f'CREATE VIEW "{name}" AS SELECT * FROM read_parquet([{paths}])')
            else:
                self._con.register(f"__empty_{name}", spec.empty())
                self._con.execute(f'CREATE VIEW "{name}" AS SELECT * FROM "__empty_{name}"')

    def query(self, sql: str, params: Sequence[Any] | None = None) -> pa.Table:
        """Run SQL against the latest snapshot and return an Arrow table."""
        import duckdb

        with self._lock:
            for attempt in range(3):
                self.refresh()
                try:
                    return self._con.execute(sql, params or []).to_arrow_table()
                except duckdb.IOException:
                    # A compaction removed a shard of an old snapshot under us: re-read HEAD.
                    if attempt == 2:
                        raise
                    self._head_stamp = None
        raise AssertionError("unreachable")

    def rows(self, sql: str, params: Sequence[Any] | None = None) -> list[dict[str, Any]]:
        return self.query(sql, params).to_pylist()

    def scalar(self, sql: str, params: Sequence[Any] | None = None) -> Any:
        table = self.query(sql, params)
        return table.column(0)[0].as_py() if table.num_rows else None

    def close(self) -> None:
        with self._lock:
            self._con.close()


def _spec(name: str) -> TableSpec:
    try:
        return TABLES[name]
    except KeyError:
        raise WorkspaceError(f"unknown table {name!r}; known: {', '.join(sorted(TABLES))}") from None


def _check_schema_version(spec: TableSpec, found: int) -> None:
    if found > spec.version:
        raise WorkspaceError(
            f"table {spec.name!r} has schema v{found}, newer than this rgvlm reads "
            f"(v{spec.version}); upgrade rgvlm"
        )
    if found < spec.version:
        hint = (
            "run `rgvlm migrate -w WORKSPACE` (it rewrites the table; nothing is lost)"
            if (spec.name, found) in MIGRATIONS
            else "no migration exists; re-import"
        )
        raise WorkspaceError(
            f"table {spec.name!r} has schema v{found}, this rgvlm reads v{spec.version}: {hint}"
        )


def _conform(spec: TableSpec, table: pa.Table) -> pa.Table:
    """Cast to the spec's schema; a missing or mistyped column is a bug in the caller, said plainly."""
    missing = [n for n in spec.schema.names if n not in table.column_names]
    extra = [n for n in table.column_names if n not in spec.schema.names]
    if missing or extra:
        raise ValueError(
            f"rows for {spec.name!r} do not match its schema: missing {missing}, unexpected {extra}"
        )
    return table.select(spec.schema.names).cast(spec.schema)


def _sql_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
