from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from backend.utils import provenance
from backend.utils.provenance import (
    PROVENANCE_PACKAGES,
    collect_provenance,
    data_range,
    git_state,
    hash_bars,
    package_versions,
)

HAS_GIT = shutil.which("git") is not None


def _git(cwd: Path, *args: str) -> None:
    env = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
        "HOME": str(cwd),
        "PATH": "/usr/bin:/bin:/usr/local/bin",
    }
    subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)


@pytest.mark.skipif(not HAS_GIT, reason="git is not installed")
def test_git_state_of_a_scratch_repository(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "a.txt").write_text("1\n")
    _git(repo, "add", "a.txt")
    _git(repo, "commit", "-q", "-m", "first")
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert git_state(repo) == {"commit": head, "dirty": False}
    (repo / "a.txt").write_text("2\n")
    assert git_state(repo) == {"commit": head, "dirty": True}
    _git(repo, "checkout", "-q", "a.txt")
    (repo / "new_module.py").write_text("x = 1\n")  # untracked code also changes what ran
    assert git_state(repo)["dirty"] is True


def test_git_state_outside_a_repository_is_unknown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    assert git_state(tmp_path) == {"commit": "unknown", "dirty": None}
    assert git_state(tmp_path / "does-not-exist") == {"commit": "unknown", "dirty": None}


def test_git_state_without_git_is_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_git(*args: Any, **kwargs: Any) -> Any:
        raise FileNotFoundError("git")

    monkeypatch.setattr(provenance.subprocess, "run", no_git)
    assert git_state() == {"commit": "unknown", "dirty": None}
    assert collect_provenance()["git_commit"] == "unknown"


def test_package_versions() -> None:
    versions = package_versions()
    assert tuple(versions) == PROVENANCE_PACKAGES
    assert versions["numpy"] == np.__version__
    assert versions["pandas"] == pd.__version__
    assert package_versions(("no-such-distribution-yooprl",)) == {
        "no-such-distribution-yooprl": None
    }


def test_collect_provenance_is_json_ready_and_utc() -> None:
    info = collect_provenance()
    assert set(info) >= {"git_commit", "git_dirty", "python", "packages", "platform"}
    assert re.fullmatch(r"[0-9a-f]{40}|unknown", info["git_commit"])
    stamp = dt.datetime.fromisoformat(info["timestamp_utc"])
    assert stamp.utcoffset() == dt.timedelta(0)
    assert json.loads(json.dumps(info)) == info


def test_hash_bars_identifies_exactly_the_bars(make_bars: Callable[..., pd.DataFrame]) -> None:
    bars = make_bars("2024-03-25", "2024-03-27").tz_convert("America/New_York")
    digest = hash_bars(bars)
    assert re.fullmatch(r"[0-9a-f]{64}", digest)
    assert hash_bars(bars.copy()) == digest
    # Display timezone and extra columns do not matter; the bytes of the bars do.
    assert hash_bars(bars.tz_convert("UTC")) == digest
    assert hash_bars(bars.assign(vix=20.0)) == digest
    changed = bars.copy()
    changed.iloc[10, changed.columns.get_loc("close")] += 1e-9
    assert hash_bars(changed) != digest
    assert hash_bars(bars.drop(bars.index[5])) != digest
    shifted = bars.copy()
    shifted.index = shifted.index + pd.Timedelta(minutes=15)
    assert hash_bars(shifted) != digest


def test_hash_of_a_range_and_data_range(make_bars: Callable[..., pd.DataFrame]) -> None:
    bars = make_bars("2024-03-25", "2024-03-27").tz_convert("America/New_York")
    first, last = bars.index[26], bars.index[51]
    assert hash_bars(bars, first, last) == hash_bars(bars.loc[first:last])
    # Naive bounds are read in the frame's timezone.
    naive = first.tz_localize(None)
    assert hash_bars(bars, naive, last) == hash_bars(bars.loc[first:last])
    info = data_range(bars, first, last)
    assert info == {
        "first_bar": first.isoformat(),
        "last_bar": last.isoformat(),
        "n_bars": 26,
        "sha256": hash_bars(bars.loc[first:last]),
    }
    with pytest.raises(ValueError, match="no bars"):
        data_range(bars, "2030-01-01")


def test_hash_bars_rejects_bad_frames(make_bars: Callable[..., pd.DataFrame]) -> None:
    bars = make_bars("2024-03-25")
    with pytest.raises(ValueError, match="timezone-aware"):
        hash_bars(bars.tz_localize(None))
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['volume'\]"):
        hash_bars(bars.drop(columns="volume"))
