"""Extended history: a queryable store of validated bars for many symbols, intervals, years.

The data layer's second store, above ``backend.data_download`` (whose validation it uses):
``bar_database.py`` keeps the bars as year-partitioned parquet and answers queries through
DuckDB; ``ingest.py`` brings files and CSV stores in through the loader's validation;
``inventory.py`` says what it holds (first/last bar, sessions, gaps); ``db_manager.py`` is
the command line (``python -m backend.database.db_manager ingest|list|export``).
"""
