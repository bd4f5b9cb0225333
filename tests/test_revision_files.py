"""The schema check reads revisions from the revision files (no Alembic import on every
command); it must agree with Alembic, and hand over to it when a file is not simple."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.store import db


def test_the_revision_files_give_alembics_revisions_and_head() -> None:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(db.alembic_config("sqlite://"))
    chain = db._revision_chain()
    assert chain is not None
    assert chain == (sorted(r.revision for r in script.walk_revisions()), script.get_heads()[0])
    assert db.known_revisions() == chain[0] and db.head_revision() == chain[1]


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"a.py": 'revision = "a"\ndown_revision = None\n', "b.py": "revision: str = 'b'\ndown_revision: str | None = 'a'\n"}, (["a", "b"], "b")),
        ({"a.py": 'revision = "a"\ndown_revision = None\n', "m.py": 'revision = "m"\ndown_revision = ("a", "x")\n'}, None),  # a merge
        ({"a.py": 'revision = "a"\ndown_revision = None\n', "b.py": 'revision = "b"\ndown_revision = None\n'}, None),  # two heads
        ({"a.py": 'REVISION = "a"\n'}, None),
    ],
)
def test_anything_but_a_plain_chain_is_left_to_alembic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, files, expected) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "versions").mkdir()
    for name, text in files.items():
        (tmp_path / "versions" / name).write_text(text)
    monkeypatch.setattr(db, "MIGRATIONS_DIR", tmp_path)
    db._revision_chain.cache_clear()
    try:
        assert db._revision_chain() == expected
    finally:
        db._revision_chain.cache_clear()
