"""CoNLL-U / CoNLL-X reading, and ingestion that refuses bad files without a trace."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from sqlalchemy import func, select

from app import pipeline
from app.errors import CorpusFormatError
from app.ingest.conll import read_conll, read_dependency_corpus
from app.store.db import session_scope
from app.store.schema import Corpus, Dependency, SegmentRow, WordRow

FIXTURES = Path(__file__).parent / "fixtures"


def test_conllu_words_heads_documents_and_skipped_nodes() -> None:
    sentences = list(read_conll(FIXTURES / "toy.conllu", "conllu"))
    assert [s.sent_id for s in sentences] == ["s1", "s2", "s3"]
    first = sentences[0]
    assert [w.form for w in first.words] == ["The", "cat", "sat", "."]
    assert [w.head for w in first.words] == [1, 2, None, 2]  # 0-based, root None
    assert (
        first.words[0].deprel == "det"
        and first.words[0].upos == "DET"
        and first.words[0].xpos == "DT"
    )
    # The multiword range 1-2 and the empty node 3.1 are not words.
    assert [w.form for w in sentences[1].words] == ["Do", "n't", "go", "."]
    corpus = read_dependency_corpus("toy", [FIXTURES / "toy.conllu"], "conllu")
    assert [d.name for d in corpus.documents] == ["doc1", "doc2"]
    assert corpus.dependency_scheme == "ud"


def test_conllx_and_gzip(tmp_path: Path) -> None:
    packed = tmp_path / "toy.conllx.gz"
    packed.write_bytes(gzip.compress((FIXTURES / "toy.conllx").read_bytes()))
    sentences = list(read_conll(packed, "conllx"))
    assert [w.deprel for w in sentences[0].words] == ["nn", "nsubj", "root", "det", "dobj"]
    assert sentences[1].words[0].head is None


BAD_FILES = {
    "too few columns": ("1\tThe\tthe\tDET\n", 1, "expected 10 tab-separated"),
    "ids out of order": (
        "1\ta\t_\tX\tX\t_\t0\troot\t_\t_\n3\tb\t_\tX\tX\t_\t1\tdep\t_\t_\n",
        2,
        "expected 2",
    ),
    "head outside": (
        "1\ta\t_\tX\tX\t_\t0\troot\t_\t_\n2\tb\t_\tX\tX\t_\t7\tdep\t_\t_\n",
        2,
        "outside the sentence",
    ),
    "head not a number": ("1\ta\t_\tX\tX\t_\tx\troot\t_\t_\n", 1, "HEAD must be an integer"),
    "empty sentence": ("# sent_id = 1\n# text = \n\n", 1, "no words"),
    "mixed heads": (
        "1\ta\t_\tX\tX\t_\t0\troot\t_\t_\n2\tb\t_\tX\tX\t_\t_\t_\t_\t_\n",
        2,
        "HEAD is '_'",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_malformed_conllu_names_file_and_line(tmp_path: Path, case: str) -> None:
    content, line, message = BAD_FILES[case]
    path = tmp_path / "bad.conllu"
    path.write_text("# sent_id = ok\n1\tfine\t_\tX\tX\t_\t0\troot\t_\t_\n\n" + content)
    with pytest.raises(CorpusFormatError) as caught:
        list(read_conll(path, "conllu"))
    assert f"bad.conllu:{line + 3}:" in str(caught.value)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_not_utf8_is_a_format_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.conllu"
    path.write_bytes("1\tcaf\xe9\t_\tX\tX\t_\t0\troot\t_\t_\n".encode("latin-1"))
    with pytest.raises(CorpusFormatError, match="not UTF-8"):
        list(read_conll(path, "conllu"))


def _counts(engine) -> tuple[int, int, int, int]:  # type: ignore[no-untyped-def]
    with session_scope(engine) as session:
        return tuple(
            session.scalar(select(func.count()).select_from(t))
            for t in (Corpus, SegmentRow, WordRow, Dependency)
        )  # type: ignore[return-value]


def test_failed_ingest_leaves_the_database_unchanged(settings, engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    pipeline.ingest_corpus(settings, "toy", fmt="conllu", path=str(FIXTURES / "toy.conllu"))
    before = _counts(engine)
    assert before == (1, 3, 10, 10)
    bad = tmp_path / "bad.conllu"
    bad.write_text((FIXTURES / "toy.conllu").read_text() + "\n1\tbroken\n")
    with pytest.raises(CorpusFormatError, match=r"bad\.conllu:\d+"):
        pipeline.ingest_corpus(settings, "bad", fmt="conllu", path=str(bad))
    assert _counts(engine) == before


def test_ingest_is_idempotent_and_refuses_a_different_corpus_under_the_same_name(
    settings, engine
) -> None:  # type: ignore[no-untyped-def]
    first = pipeline.ingest_corpus(settings, "toy", fmt="conllu", path=str(FIXTURES / "toy.conllu"))
    again = pipeline.ingest_corpus(settings, "toy", fmt="conllu", path=str(FIXTURES / "toy.conllu"))
    assert first.created and not again.created
    assert _counts(engine) == (1, 3, 10, 10)
    from app.errors import AppError

    with pytest.raises(AppError, match="another NAME"):
        pipeline.ingest_corpus(settings, "toy", fmt="conllx", path=str(FIXTURES / "toy.conllx"))


def test_a_failure_midway_through_storing_rolls_everything_back(
    settings, engine, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    import app.store.corpora as corpora

    real_insert = corpora.insert_rows

    def failing_insert(session, table, *args, **kwargs):  # type: ignore[no-untyped-def]
        if table == "dependencies":  # after corpora, documents, segments and words
            raise RuntimeError("disk full")
        return real_insert(session, table, *args, **kwargs)

    monkeypatch.setattr(corpora, "insert_rows", failing_insert)
    with pytest.raises(RuntimeError, match="disk full"):
        pipeline.ingest_corpus(settings, "toy", fmt="conllu", path=str(FIXTURES / "toy.conllu"))
    assert _counts(engine) == (0, 0, 0, 0)
