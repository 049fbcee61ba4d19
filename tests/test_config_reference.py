"""The committed configuration reference is exactly what the schema generates."""

from __future__ import annotations

import pytest


def test_committed_reference_matches_the_schema(load_script):
    gen = load_script("generate_config_reference")
    block = gen.generate()
    for path in gen.TARGETS:
        text = path.read_text(encoding="utf-8")
        assert gen.replace_block(text, block, path) == text, (
            f"{path.name} is stale: run python scripts/generate_config_reference.py --write"
        )


def test_reference_lists_every_field_of_the_schema(load_script):
    gen = load_script("generate_config_reference")
    from backend.api.console import load_experiment_schema
    from backend.api.console_forms import build_form, iter_fields

    schema = load_experiment_schema()
    block = gen.generate()
    for f in iter_fields(build_form(schema.model.model_json_schema())):
        if f.kind != "const":
            assert f".{f.name}` |" in block or f"`{f.name}` |" in block, f.path


def test_a_stale_block_is_reported(load_script, tmp_path, monkeypatch, capsys):
    gen = load_script("generate_config_reference")
    page = tmp_path / "page.md"
    page.write_text(f"# x\n\n{gen.BEGIN}\nold\n{gen.END}\n", encoding="utf-8")
    monkeypatch.setattr(gen, "TARGETS", (page,))
    monkeypatch.setattr(gen, "REPO", tmp_path)
    assert gen.main(["--check"]) == 1
    assert "stale configuration reference in page.md" in capsys.readouterr().err
    assert gen.main(["--write"]) == 0
    assert gen.main(["--check"]) == 0
    with pytest.raises(ValueError, match="no '<!-- BEGIN GENERATED"):
        gen.replace_block("no markers", "x", page)
