import json
import os

import numpy as np
import pytest

from backend.utils.atomic_io import write_json_atomic, write_text_atomic


def test_writes_and_creates_parents(tmp_path):
    target = tmp_path / "a" / "b" / "f.json"
    assert write_text_atomic(target, '{"x": 1}\n') == target
    assert target.read_bytes() == b'{"x": 1}\n'


@pytest.mark.parametrize("durable", [True, False])
def test_failed_replace_keeps_old_file_and_leaves_no_temp(tmp_path, monkeypatch, durable):
    target = tmp_path / "f.txt"
    target.write_text("old")

    def crash(src, dst):
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk gone"):
        write_text_atomic(target, "new", durable=durable)
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.txt"]


def test_json_is_strict_numpy_scalars_become_python_and_non_finite_becomes_null(tmp_path):
    data = {"sharpe": np.float32(1.5), "n": np.int64(3), "bad": [np.nan, np.inf, 2.0], 7: "k"}
    path = write_json_atomic(tmp_path / "out" / "m.json", data)
    text = path.read_text(encoding="utf-8")
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"sharpe": 1.5, "n": 3, "bad": [None, None, 2.0], "7": "k"}
