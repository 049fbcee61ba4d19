"""Years of validated bars across symbols and intervals: parquet partitions read by DuckDB.

Layout under the database root (``data/database`` by default)::

    bars/symbol=SPY/interval=15m/year=2024/bars.parquet   one file per New York year
    ingest_log.jsonl                                      one line per accepted ingest
    .lock                                                 one writer at a time

Each partition holds the canonical bar frame (``schema.py``) as columns ``timestamp``
(UTC, ns), ``open, high, low, close, volume`` (float64) and ``session`` (the New York
date), sorted and unique. Only bars that passed the loader's validation get here
(``ingest.py``); reads check the partition's schema again, so a file damaged or replaced
behind the database's back is a one-line error naming it, never a silent wrong answer.

**Nothing stored is lost or silently rewritten.** Adding bars that overlap what is stored
follows one rule (:meth:`BarDatabase.add_bars`): a bar equal to the stored one (to
``row_checks.DUPLICATE_RTOL``) is counted as already stored and skipped, a bar that
differs refuses the whole ingest before anything is written, naming the bar, the field,
both values and where the new one came from. Partitions are replaced atomically
(temporary file, fsync, ``os.replace``); a crash between two partitions of one ingest
leaves every partition whole, and running the same ingest again completes it.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from backend.data_download.loader import TimeLike, join_vix_asof, select_window, vix_read_start
from backend.data_download.row_checks import DUPLICATE_RTOL
from backend.data_download.schema import (
    INDEX_NAME,
    INTERVALS,
    NY_TZ,
    OHLCV_COLUMNS,
    VIX_SYMBOL,
    bar_index,
    to_ny,
)

DEFAULT_DATABASE_DIR = Path("data") / "database"
"""Where the database lives unless told otherwise (git-ignored like all of ``data/``)."""

PARTITION_FILE = "bars.parquet"
SYMBOL_PATTERN = re.compile(r"^\^?[A-Z][A-Z0-9.\-]{0,14}$")
"""A ticker as the store spells it: upper case, optional ``^`` for indexes (``^VIX``)."""

_FIELDS: list[pa.Field] = [
    pa.field(INDEX_NAME, pa.timestamp("ns", tz="UTC"), nullable=False),
    *(pa.field(c, pa.float64(), nullable=False) for c in OHLCV_COLUMNS),
    pa.field("session", pa.date32(), nullable=False),
]
_SCHEMA = pa.schema(_FIELDS)


class DatabaseError(ValueError):
    """A refused operation; the message is one line naming the file, bar or field."""


@dataclass(frozen=True)
class AddReport:
    """What one :meth:`BarDatabase.add_bars` did.

    Attributes:
        symbol: Ticker.
        interval: Bar length.
        added: Bars new to the database.
        already_stored: Bars equal to stored ones, skipped.
        years_written: Partitions replaced (each keeps every bar it held).
        sources: Where the bars came from (files or a store folder).
    """

    symbol: str
    interval: str
    added: int
    already_stored: int
    years_written: list[int] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)


def check_symbol_name(symbol: str) -> str:
    """The symbol upper-cased, or a :class:`DatabaseError` saying what a ticker looks like."""
    name = str(symbol).strip().upper()
    if not SYMBOL_PATTERN.match(name):
        raise DatabaseError(
            f"symbol {symbol!r} is not a ticker (letters, digits, '.', '-', up to 15 "
            "characters, starting with a letter or '^')"
        )
    return name


def check_interval_name(interval: str) -> str:
    """The interval, or a :class:`DatabaseError` listing the known ones."""
    if interval not in INTERVALS:
        raise DatabaseError(
            f"interval {interval!r} is unknown; expected one of {sorted(INTERVALS)}"
        )
    return interval


def _ny_year(index: pd.DatetimeIndex) -> np.ndarray:
    return np.asarray(index.tz_convert(NY_TZ).year, dtype=np.int64)


def _to_table(bars: pd.DataFrame) -> pa.Table:
    index = bar_index(bars).tz_convert("UTC").as_unit("ns")
    sessions = index.tz_convert(NY_TZ).tz_localize(None).normalize().date
    columns: dict[str, Any] = {INDEX_NAME: pa.array(index, type=pa.timestamp("ns", tz="UTC"))}
    for c in OHLCV_COLUMNS:
        columns[c] = pa.array(bars[c].to_numpy(dtype=np.float64))
    columns["session"] = pa.array(sessions, type=pa.date32())
    return pa.Table.from_pydict(columns, schema=_SCHEMA)


def _frame_from_arrays(ns: Any, values: Mapping[str, Any]) -> pd.DataFrame:
    index = pd.DatetimeIndex(
        pd.to_datetime(np.asarray(ns, dtype=np.int64), utc=True), name=INDEX_NAME
    )
    data = {c: np.asarray(values[c], dtype=np.float64) for c in OHLCV_COLUMNS}
    return pd.DataFrame(data, index=index.tz_convert(NY_TZ).as_unit("ns"))


def check_bar_frame(bars: pd.DataFrame, what: str) -> None:
    """Refuse anything that is not a canonical bar frame (``Docs/CONTRACTS.md``).

    Raises:
        DatabaseError: Naming ``what`` and the first thing wrong.
    """
    try:
        index = bar_index(bars, what)
    except ValueError as exc:
        raise DatabaseError(str(exc)) from None
    missing = [c for c in OHLCV_COLUMNS if c not in bars.columns]
    if missing:
        raise DatabaseError(f"{what}: missing column(s) {missing}; expected {list(OHLCV_COLUMNS)}")
    if not (index.is_monotonic_increasing and index.is_unique):
        raise DatabaseError(f"{what}: timestamps must be strictly increasing")
    values = bars[list(OHLCV_COLUMNS)].to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        row, col = (int(k) for k in np.argwhere(bad)[0])
        raise DatabaseError(
            f"{what}: {OHLCV_COLUMNS[col]} at {index[row].isoformat(sep=' ')} is not a finite "
            "number"
        )


class BarDatabase:
    """The bar database at ``root`` (created on the first write; reading never writes).

    Args:
        root: Database folder.
    """

    def __init__(self, root: str | Path = DEFAULT_DATABASE_DIR) -> None:
        self.root = Path(root)
        self._connection: duckdb.DuckDBPyConnection | None = None

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        """A cursor of one in-memory DuckDB kept per instance (connecting costs ~50-90 ms)."""
        if self._connection is None:
            self._connection = duckdb.connect()
        return self._connection.cursor()

    # ------------------------------------------------------------------ layout

    @property
    def bars_dir(self) -> Path:
        """Folder of the parquet partitions."""
        return self.root / "bars"

    @property
    def log_path(self) -> Path:
        """The ingest log (JSON lines)."""
        return self.root / "ingest_log.jsonl"

    def partition_path(self, symbol: str, interval: str, year: int) -> Path:
        """File of one symbol, interval and New York year."""
        return (
            self.bars_dir
            / f"symbol={check_symbol_name(symbol)}"
            / f"interval={check_interval_name(interval)}"
            / f"year={int(year)}"
            / PARTITION_FILE
        )

    def holdings(self) -> list[tuple[str, str]]:
        """``(symbol, interval)`` pairs with at least one partition, sorted."""
        out = []
        for path in sorted(self.bars_dir.glob(f"symbol=*/interval=*/year=*/{PARTITION_FILE}")):
            symbol = path.parents[2].name.removeprefix("symbol=")
            interval = path.parents[1].name.removeprefix("interval=")
            if (symbol, interval) not in out:
                out.append((symbol, interval))
        return sorted(out)

    def years(self, symbol: str, interval: str) -> list[int]:
        """Years with a partition for ``symbol`` and ``interval``, ascending."""
        folder = self.partition_path(symbol, interval, 2000).parents[1]
        years = []
        for path in folder.glob(f"year=*/{PARTITION_FILE}"):
            try:
                years.append(int(path.parent.name.removeprefix("year=")))
            except ValueError:
                raise DatabaseError(f"{path}: unexpected partition folder name") from None
        return sorted(years)

    def files(
        self,
        symbol: str,
        interval: str,
        first_year: int | None = None,
        last_year: int | None = None,
    ) -> list[Path]:
        """Partition files of ``symbol`` and ``interval`` within the years, ascending."""
        return [
            self.partition_path(symbol, interval, y)
            for y in self.years(symbol, interval)
            if (first_year is None or y >= first_year) and (last_year is None or y <= last_year)
        ]

    # ------------------------------------------------------------------ reading

    def _check_schema(self, path: Path) -> None:
        try:
            schema = pq.read_schema(path)
        except (OSError, pa.ArrowException) as exc:
            raise DatabaseError(
                f"{path}: not a readable parquet file ({exc}); restore it from "
                "a backup or remove it and ingest that year again"
            ) from None
        if not schema.remove_metadata().equals(_SCHEMA):
            raise DatabaseError(
                f"{path}: columns {schema.names} with types "
                f"{[str(t) for t in schema.types]} are not the database's "
                f"{_SCHEMA.names}; the file was not written by this database"
            )

    def _read_files(
        self, files: Sequence[Path], where: str = "", params: Sequence[Any] = ()
    ) -> pd.DataFrame:
        if not files:
            return _frame_from_arrays(
                np.zeros(0, np.int64), {c: np.zeros(0) for c in OHLCV_COLUMNS}
            )
        for path in files:
            self._check_schema(path)
        sql = (
            f"SELECT epoch_ns({INDEX_NAME}) AS ns, {', '.join(OHLCV_COLUMNS)} "
            f"FROM read_parquet(?) {where} ORDER BY {INDEX_NAME}"
        )
        try:
            with self._cursor() as con:
                got = con.execute(sql, [[str(p) for p in files], *params]).fetchnumpy()
        except duckdb.Error as exc:
            first_line = str(exc).splitlines()[0]
            raise DatabaseError(f"{self.root}: query failed: {first_line}") from None
        return _frame_from_arrays(got["ns"], got)

    def load_bars(
        self,
        symbol: str,
        interval: str = "15m",
        start: TimeLike | None = None,
        end: TimeLike | None = None,
    ) -> pd.DataFrame:
        """The stored bars of one symbol between ``start`` and ``end`` as a bar frame.

        ``start``/``end`` mean what they mean for ``loader.load_bars`` (a date ``end`` keeps
        that whole day; naive values are New York time): the window is selected by the
        loader's own ``select_window``, after DuckDB has read only the years and row
        groups that can hold it.

        Raises:
            DatabaseError: Nothing stored for ``symbol``/``interval`` (naming what is), or a
                partition that is not the database's.
        """
        symbol, interval = check_symbol_name(symbol), check_interval_name(interval)
        if not self.years(symbol, interval):
            held = ", ".join(f"{s} {i}" for s, i in self.holdings()) or "nothing"
            raise DatabaseError(f"{self.root}: no {symbol} {interval} bars; it holds {held}")
        lo = to_ny(start) if start is not None else None
        hi = to_ny(end) if end is not None else None
        files = self.files(
            symbol, interval, None if lo is None else lo.year, None if hi is None else hi.year
        )
        clauses, params = [], []
        if lo is not None:
            clauses.append(f"{INDEX_NAME} >= ?")
            params.append(lo.to_pydatetime())
        if hi is not None:  # a day past the bound: select_window makes it exact
            clauses.append(f"{INDEX_NAME} < ?")
            params.append((hi + pd.Timedelta(days=1)).to_pydatetime())
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        return select_window(self._read_files(files, where, params), start, end)

    def load_market(
        self,
        symbol: str,
        interval: str = "15m",
        start: TimeLike | None = None,
        end: TimeLike | None = None,
        *,
        include_vix: bool = True,
        vix_symbol: str = VIX_SYMBOL,
        vix_tolerance: pd.Timedelta | str | None = None,
    ) -> pd.DataFrame:
        """The market frame of ``loader.load_market`` (bars + as-of VIX close) from here.

        VIX is read from the same database, reaching back before ``start`` as the loader
        does, and joined by ``loader.join_vix_asof`` (the last VIX close at or before each
        bar's close; never a later one).

        Raises:
            DatabaseError: No bars for ``symbol``, or no VIX although ``include_vix`` (the
                message names the way out).
        """
        bars = self.load_bars(symbol, interval, start, end)
        if not include_vix:
            return bars
        vix_name = check_symbol_name(vix_symbol)
        if not self.years(vix_name, check_interval_name(interval)):
            raise DatabaseError(
                f"{self.root}: no {vix_name} {interval} bars for the VIX features; ingest them "
                f"(python -m backend.database.db_manager ingest FILE --symbol {vix_name}) or "
                "run without VIX features (use_vix: false in the features config, --no-vix "
                "on the main job)"
            )
        vix = self.load_bars(
            vix_name, interval, vix_read_start(start, interval, vix_tolerance), end
        )
        return join_vix_asof(bars, vix, interval, vix_tolerance)

    def sql(self, query: str) -> pd.DataFrame:
        """Run SQL against a view ``bars`` of every partition (for users and the inventory).

        The view has the partition columns plus ``symbol``, ``interval``, ``year``.
        """
        files = sorted(self.bars_dir.glob(f"symbol=*/interval=*/year=*/{PARTITION_FILE}"))
        if not files:
            raise DatabaseError(f"{self.root}: the database holds no bars")
        for path in files:
            self._check_schema(path)
        try:
            with self._cursor() as con:
                listed = ", ".join("'" + str(p).replace("'", "''") + "'" for p in files)
                con.execute(  # a view cannot take a prepared parameter: quoted literals
                    f"CREATE OR REPLACE TEMP VIEW bars AS SELECT * FROM read_parquet([{listed}], "
                    "hive_partitioning=true, "
                    "hive_types={'symbol': VARCHAR, 'interval': VARCHAR, 'year': INTEGER})"
                )
                return con.execute(query).df()
        except duckdb.Error as exc:
            raise DatabaseError(f"{self.root}: query failed: {str(exc).splitlines()[0]}") from None

    # ------------------------------------------------------------------ writing

    @contextmanager
    def _writer(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise DatabaseError(
                    f"{self.root}: another process is writing to this database; try again "
                    "when it is done"
                ) from None
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _write_partition(self, path: Path, table: pa.Table) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".bars-", suffix=".tmp", dir=path.parent)
        os.close(fd)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 is for secrets; bars are data
        try:
            pq.write_table(table, tmp, compression="zstd", row_group_size=65_536)
            with open(tmp, "rb") as handle:
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def add_bars(
        self,
        symbol: str,
        interval: str,
        bars: pd.DataFrame,
        *,
        sources: Sequence[str] = (),
        locate: Callable[[pd.Timestamp], str] | None = None,
    ) -> AddReport:
        """Add validated bars; the overlap rule keeps everything already stored.

        A bar at a stored timestamp must equal the stored bar in every field (relative
        tolerance ``DUPLICATE_RTOL``): it is then counted in ``already_stored`` and
        skipped. Any difference refuses the whole call before a byte is written. New bars
        are merged into their year's partition, which is replaced atomically.

        Args:
            symbol: Ticker.
            interval: Bar length of ``bars``.
            bars: A canonical bar frame that passed validation (``ingest.py``).
            sources: Where the bars came from, for the log and error messages.
            locate: Maps a bar's timestamp to ``file:line`` for error messages.

        Raises:
            DatabaseError: A conflicting bar (one line naming it) or a malformed frame.
        """
        symbol, interval = check_symbol_name(symbol), check_interval_name(interval)
        check_bar_frame(bars, f"bars for {symbol} {interval}")
        bars = bars.loc[:, list(OHLCV_COLUMNS)].astype(np.float64)
        if len(bars) == 0:
            return AddReport(symbol, interval, 0, 0, [], list(sources))
        index = bar_index(bars)
        years = _ny_year(index)
        with self._writer():
            plans: list[tuple[Path, pd.DataFrame]] = []
            added = stored_equal = 0
            for year in np.unique(years):
                new = bars.loc[years == year]
                path = self.partition_path(symbol, interval, int(year))
                old = self._read_files([path]) if path.exists() else None
                if old is None or len(old) == 0:
                    plans.append((path, new))
                    added += len(new)
                    continue
                common = new.index.intersection(old.index)
                if len(common):
                    a = new.loc[common, list(OHLCV_COLUMNS)].to_numpy()
                    b = old.loc[common, list(OHLCV_COLUMNS)].to_numpy()
                    differs = ~np.isclose(a, b, rtol=DUPLICATE_RTOL, atol=0.0)
                    if differs.any():
                        row, col = (int(k) for k in np.argwhere(differs)[0])
                        stamp = common[row]
                        where = locate(stamp) if locate is not None else ", ".join(sources)
                        raise DatabaseError(
                            f"{where}: {symbol} {interval} bar {stamp.isoformat(sep=' ')} "
                            f"is already stored with {OHLCV_COLUMNS[col]}={b[row, col]:.10g}, "
                            f"this input has {a[row, col]:.10g} ({int(differs.any(axis=1).sum())}"
                            " conflicting bar(s)); nothing was stored: stored bars are never "
                            "rewritten"
                        )
                fresh = new.loc[~new.index.isin(old.index)]
                stored_equal += len(common)
                if len(fresh):
                    plans.append((path, pd.concat([old, fresh]).sort_index()))
                    added += len(fresh)
            for path, frame in plans:
                self._write_partition(path, _to_table(frame))
            report = AddReport(
                symbol,
                interval,
                added,
                stored_equal,
                sorted(int(p.parent.name.removeprefix("year=")) for p, _ in plans),
                list(sources),
            )
            self._log(report, index)
        return report

    def _log(self, report: AddReport, index: pd.DatetimeIndex) -> None:
        entry = {
            "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            **asdict(report),
            "first_bar": index[0].isoformat(),
            "last_bar": index[-1].isoformat(),
        }
        with open(self.log_path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
