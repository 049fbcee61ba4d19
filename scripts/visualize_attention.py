"""Attention heatmaps of a supervised transformer bundle for one session's decision bars.

    python scripts/visualize_attention.py --model RUN_OR_BUNDLE_DIR --symbol SPY \
        --date 2020-03-18 --output DIR [--data-dir STORE]

For every layer and head it writes ``attention_L{layer}_H{head}.png``: one row per decision
bar of the session (its observation window as the env emits it), one column per bar age
(0 = the decision bar itself), colour = the attention the decision bar pays to that bar.
``attention_by_age.png`` shows the session's mean by age per layer, which is where a
temporal-decay bias or a sliding window shows up. ``--model`` may be a bundle or a run
folder holding ``bundles/transformer``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch as th  # noqa: E402

from backend.data_download.dataset import SymbolDataset  # noqa: E402
from backend.supervised.bundle import load_bundle  # noqa: E402
from backend.supervised.samples import observation_windows  # noqa: E402


def _bundle_dir(path: Path) -> Path:
    if (path / "config.json").is_file():
        return path
    candidate = path / "bundles" / "transformer"
    if (candidate / "config.json").is_file():
        return candidate
    raise SystemExit(f"error: {path}: neither a bundle nor a run folder with bundles/transformer")


def session_attention(
    bundle_dir: Path, data_dir: Path, symbol: str, date: str
) -> tuple[np.ndarray, pd.DatetimeIndex]:
    """Newest-bar attention rows ``(bars, L, H, T)`` of the session and its bar starts."""
    bundle = load_bundle(bundle_dir)
    trunk = bundle.model.attention_trunk
    if trunk is None:
        raise SystemExit(f"error: {bundle_dir}: a {bundle.config['mode']} bundle has no attention")
    if symbol not in bundle.normalizers:
        raise SystemExit(
            f"error: {bundle_dir}: no normalizer for {symbol}; it has {sorted(bundle.normalizers)}"
        )
    ds = SymbolDataset.load(symbol, data_dir, bundle.feature_config)
    arrays = ds.arrays(bundle.normalizers[symbol])
    layout = ds.layout.iloc[ds.warmup_rows :]
    day = pd.Timestamp(date).normalize()
    rows = np.flatnonzero(pd.DatetimeIndex(layout["session"]).normalize() == day)
    if rows.size == 0:
        sessions = pd.DatetimeIndex(layout["session"])
        raise SystemExit(
            f"error: {symbol} has no session {date} past the feature warm-up in {data_dir} "
            f"(sessions {sessions[0].date()} .. {sessions[-1].date()})"
        )
    window, mask = observation_windows(
        arrays.features, rows, bundle.config["sequence_length"], bundle.config["feature_clip"]
    )
    ids = bundle.model.instrument_ids(np.full(rows.size, symbol))
    trunk.store_attention = True
    with th.no_grad():
        bundle.model(
            th.from_numpy(window),
            th.from_numpy(mask),
            th.from_numpy(ids) if ids is not None else None,
        )
    maps = th.stack([layer[:, :, -1, :] for layer in trunk.last_attention], dim=1)
    trunk.store_attention = False
    return maps.numpy(), pd.DatetimeIndex(layout.index[rows])


def write_heatmaps(attention: np.ndarray, bars: pd.DatetimeIndex, output: Path) -> list[Path]:
    """One PNG per (layer, head), columns by age, plus the mean-by-age summary."""
    output.mkdir(parents=True, exist_ok=True)
    n_bars, n_layers, n_heads, steps = attention.shape
    by_age = attention[..., ::-1]  # column a = age a
    labels = [f"{ts:%H:%M}" for ts in bars]
    paths = []
    for layer in range(n_layers):
        for head in range(n_heads):
            fig, ax = plt.subplots(figsize=(max(6, steps * 0.25), max(4, n_bars * 0.22)))
            image = ax.imshow(by_age[:, layer, head], aspect="auto", cmap="viridis")
            ax.set(
                xlabel="bar age (0 = decision bar)",
                ylabel="decision bar (NY)",
                title=f"layer {layer}, head {head}: {bars[0]:%Y-%m-%d}",
            )
            ax.set_yticks(range(n_bars), labels, fontsize=6)
            fig.colorbar(image, ax=ax, label="attention")
            fig.tight_layout()
            path = output / f"attention_L{layer}_H{head}.png"
            fig.savefig(path, dpi=110)
            plt.close(fig)
            paths.append(path)
    fig, ax = plt.subplots(figsize=(6, 4))
    for layer in range(n_layers):
        ax.plot(range(steps), by_age[:, layer].mean(axis=(0, 1)), "o-", label=f"layer {layer}")
    ax.set(xlabel="bar age", ylabel="mean attention", title=f"{bars[0]:%Y-%m-%d}: by age")
    ax.legend()
    fig.tight_layout()
    path = output / "attention_by_age.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    paths.append(path)
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    """Command line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, required=True, help="bundle or run folder")
    p.add_argument("--symbol", default="SPY")
    p.add_argument("--date", required=True, help="session date YYYY-MM-DD")
    p.add_argument("--output", type=Path, required=True)
    p.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="CSV store (default: the one the bundle was trained on)",
    )
    args = p.parse_args(argv)
    bundle_dir = _bundle_dir(args.model)
    data_dir = args.data_dir
    if data_dir is None:
        meta = load_bundle(bundle_dir).metadata
        if not meta.get("data_dir"):
            raise SystemExit("error: the bundle records no data dir; pass --data-dir")
        data_dir = Path(meta["data_dir"])
    attention, bars = session_attention(bundle_dir, data_dir, args.symbol.upper(), args.date)
    for path in write_heatmaps(attention, bars, args.output):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
