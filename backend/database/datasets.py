"""One symbol's featurized dataset from a CSV store or from the bar database.

The trainer, the main job and the env factory build a ``SymbolDataset`` here, so a run
reads the bar database (``data.database``) exactly as it reads a store: the same market
frame (``BarDatabase.load_market`` equals ``loader.load_market`` on the same bars), the
same features.
"""

from __future__ import annotations

from pathlib import Path

from backend.data_download.dataset import SymbolDataset
from backend.data_download.feature_config import FeatureConfig
from backend.database.bar_database import BarDatabase


def load_symbol_dataset(
    symbol: str,
    features: FeatureConfig,
    *,
    data_dir: str | Path | None = None,
    database: str | Path | None = None,
    start: str | None = None,
    end: str | None = None,
) -> SymbolDataset:
    """The dataset of ``symbol`` from ``database`` when given, else from ``data_dir``.

    Raises:
        ValueError: Neither or both sources, no bars in the range, or (from the database)
            no such folder.
        DatabaseError: The database lacks the symbol or its VIX.
    """
    if (data_dir is None) == (database is None):
        raise ValueError("give exactly one of data_dir (a CSV store) and database")
    if data_dir is not None:
        return SymbolDataset.load(
            symbol, data_dir, features, interval=features.interval, start=start, end=end
        )
    root = Path(database)  # type: ignore[arg-type]
    if not root.is_dir():
        raise ValueError(f"database: {root} is not a directory (a bar database, Docs/DATA.md)")
    market = BarDatabase(root).load_market(
        symbol, features.interval, start, end, include_vix=features.use_vix
    )
    if market.empty:
        raise ValueError(
            f"{symbol}: no bars in {root} between {start or 'the first bar'} and "
            f"{end or 'the last bar'}"
        )
    return SymbolDataset.from_market(symbol, market, features, interval=features.interval)
