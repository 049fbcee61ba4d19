"""Fuzz the CSV loader: every mutated file ends in bars or a clear, located error.

Hundreds of seeded mutations of a valid two-session file (byte flips, truncations, other
encodings, header edits, garbled UTC offsets and years, odd numbers, NUL bytes, stray
quotes, line-ending changes). The only acceptable outcomes are a loaded bar frame or a
:class:`DataValidationError` whose every error issue names the file (and a line when the
issue is about a row). Any other exception is a failure, so a traceback cannot happen.
"""

from __future__ import annotations

import random
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from backend.data_download.loader import load_bars
from backend.data_download.schema import DataValidationError

N_FILES = 400
SEED = 20261201

OFFSETS = [
    "-04: 0", "-04:0", "-4:00", "+99:00", "-0400", "-04", "Z", "z", "−04:00", "-04:00:00",
    "-04:60", "+24:00", "--04:00", "-04:00Z", " -04:00", "-0４:00", "-04:00\x00", "+14:00",
]  # fmt: skip
YEARS = ["6024", "0001", "99999", "1677", "2262", "0000", "１９９９", "20244"]
NUMBERS = ["1e309", "nan", "-inf", "0x10", "1,5", "", "１.5", "1_000", "--1", "1e-400", "١٢"]
ENCODINGS = ["utf-16", "utf-16-le", "utf-32", "latin-1", "cp1252", "utf-8-sig"]
HEADERS = [
    "timestamp,open,high,low,close,volume,close",
    "timestamp,open,high,low,close,volume,Close",
    "timestamp,open,high,low,volume",
    "Date,Time,Open,High,Low,Close,Volume",
    "timestamp;open;high;low;close;volume",
    "",
    "timestamp,open,high,low,close,volume,timestamp",
    "\ufefftimestamp,open,high,low,close,volume",
    "timestamp,open,high,low,close,volume,symbol",
    "timestamp,open,high,low,close,volume,,,,",
    '"timestamp,open",high,low,close,volume',
]


def base_csv() -> str:
    rows = ["timestamp,open,high,low,close,volume"]
    for day in ("2024-10-01", "2024-10-02"):
        t0 = pd.Timestamp(f"{day} 09:30", tz="America/New_York")
        for k in range(26):
            ts = t0 + pd.Timedelta(minutes=15 * k)
            p = 570.0 + k * 0.1
            rows.append(f"{ts.isoformat(sep=' ')},{p},{p + 0.5},{p - 0.5},{p + 0.2},{1000 + k}")
    return "\n".join(rows) + "\n"


def mutate(rng: random.Random, text: str) -> bytes:
    kind = rng.choice(
        [
            "flip", "truncate", "encoding", "header", "offset", "year", "number", "nul",
            "quote", "line_endings", "garbage_line", "long_line", "swap_columns", "combo",
        ]
    )  # fmt: skip
    lines = text.splitlines()
    row_level = kind not in ("flip", "truncate", "encoding", "nul", "line_endings", "combo")
    if row_level and (len(lines) < 2 or min(len(ln.split(",")) for ln in lines[1:]) < 2):
        kind = "flip"  # an earlier mutation left nothing row-shaped to edit
    if kind == "flip" and not text:
        return b""
    if kind == "flip":
        data = bytearray(text.encode())
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        return bytes(data)
    if kind == "truncate":
        data = text.encode()
        return data[: rng.randrange(len(data) + 1)]
    if kind == "encoding":
        enc = rng.choice(ENCODINGS)
        return text.replace("volume", "vølume" if rng.random() < 0.3 else "volume").encode(
            enc, errors="replace"
        )
    if kind == "header":
        lines[0] = rng.choice(HEADERS)
        if lines[0].endswith(",close") or lines[0].endswith(",Close"):
            lines[1:] = [ln + "," + str(rng.choice([ln.split(",")[4], "1.0"])) for ln in lines[1:]]
        return ("\n".join(lines) + "\n").encode()
    if kind == "offset":
        k = rng.randrange(1, len(lines))
        lines[k] = lines[k].replace("-04:00", rng.choice(OFFSETS), 1)
        return ("\n".join(lines) + "\n").encode()
    if kind == "year":
        k = rng.randrange(1, len(lines))
        lines[k] = rng.choice(YEARS) + lines[k][4:]
        return ("\n".join(lines) + "\n").encode()
    if kind == "number":
        k = rng.randrange(1, len(lines))
        cells = lines[k].split(",")
        cells[rng.randrange(1, len(cells))] = rng.choice(NUMBERS)
        lines[k] = ",".join(cells)
        return ("\n".join(lines) + "\n").encode()
    if kind == "nul":
        data = bytearray(text.encode())
        at = rng.randrange(len(data) + 1)
        return bytes(data[:at]) + b"\x00" * rng.randint(1, 64) + bytes(data[at:])
    if kind == "quote":
        k = rng.randrange(1, len(lines))
        lines[k] = lines[k][: rng.randrange(len(lines[k]) + 1)] + '"' + lines[k][5:]
        return ("\n".join(lines) + "\n").encode()
    if kind == "line_endings":
        return text.replace("\n", rng.choice(["\r", "\r\n", "\n\r", "\x85", "\u2028"])).encode()
    if kind == "garbage_line":
        k = rng.randrange(1, len(lines))
        junk = "".join(chr(rng.randrange(1, 0x2FFF)) for _ in range(rng.randint(1, 40)))
        lines.insert(k, junk)
        return ("\n".join(lines) + "\n").encode("utf-8", errors="replace")
    if kind == "long_line":
        k = rng.randrange(1, len(lines))
        lines.insert(k, "," * rng.randint(6, 5000))
        return ("\n".join(lines) + "\n").encode()
    if kind == "swap_columns":
        k = rng.randrange(1, len(lines))
        cells = lines[k].split(",")
        i, j = rng.sample(range(len(cells)), 2)
        cells[i], cells[j] = cells[j], cells[i]
        lines[k] = ",".join(cells)
        return ("\n".join(lines) + "\n").encode()
    data = text
    out = b""
    for _ in range(3):  # combo: several text-level mutations in a row
        out = mutate(rng, data)
        data = out.decode("utf-8", errors="replace")
    return out


def run_fuzz(
    tmp: Path, n_files: int, seed: int, load: Callable[..., pd.DataFrame] = load_bars
) -> Counter[str]:
    rng = random.Random(seed)
    text = base_csv()
    counts: Counter[str] = Counter()
    folder = tmp / "intraday" / "SPY" / "15m"
    folder.mkdir(parents=True)
    for n in range(n_files):
        path = folder / "2024-10-01.csv"
        path.write_bytes(mutate(rng, text))
        on_error = "raise" if n % 2 == 0 else "drop"
        counts["files"] += 1
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                bars = load("SPY", data_dir=tmp, on_error=on_error, use_cache=n % 3 == 0)
        except DataValidationError as exc:
            counts["clear_errors"] += 1
            for issue in exc.issues:
                assert issue.file and str(folder) in issue.file, (n, issue)
            assert str(exc).count("\n") >= 1
        except Exception as exc:  # noqa: BLE001 - the point of the test
            counts["tracebacks"] += 1
            raise AssertionError(
                f"mutation {n} (seed {seed}) raised {type(exc).__name__}: {exc}; "
                f"content {path.read_bytes()[:300]!r}"
            ) from exc
        else:
            counts["accepted"] += 1
            assert bars.index.is_monotonic_increasing and bars.index.is_unique
            assert bars.notna().all().all()
    return counts


def test_loader_fuzz_never_tracebacks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    counts = run_fuzz(tmp_path, N_FILES, SEED)
    with capsys.disabled():
        print(f"\nloader fuzz (seed {SEED}): {dict(counts)}")
    assert counts["tracebacks"] == 0
    assert counts["files"] == N_FILES
    assert counts["clear_errors"] > N_FILES // 4 and counts["accepted"] > 0
