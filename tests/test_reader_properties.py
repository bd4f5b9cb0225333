"""Property-based tests of the corpus readers (hypothesis): any input is either read or
refused with CorpusFormatError, never another exception; a valid tree round-trips."""

from __future__ import annotations

import gzip
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.errors import CorpusFormatError
from app.ingest.conll import read_dependency_corpus
from app.ingest.coref import read_conll2012, read_corefud, read_gap

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Pieces that make near-valid lines likelier than pure noise would.
PIECES = st.sampled_from(
    ["\t", "_", "0", "1", "2", "3", "-1", "1-2", "1.1", "root", "det", "#", "# newdoc id = d",
     "# text = a b", "Entity=(1", "Entity=1)", "Entity=(2-person)", "(1", "1)", "(1)", "|", "-",
     "#begin document (d); part 000", "#end document", "TRUE", "FALSE", "\ufeff", "é", "\r"]
)  # fmt: skip
LINE = st.lists(st.one_of(PIECES, st.text(max_size=4)), max_size=12).map("".join)
STRUCTURED = st.lists(LINE, max_size=20).map(lambda lines: "\n".join(lines).encode("utf-8", "surrogatepass"))
RAW = st.binary(max_size=400)
INPUT = st.one_of(STRUCTURED, RAW)


def _read(reader: Callable[[Path], object], data: bytes, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / f"input{suffix}"
        path.write_bytes(gzip.compress(data) if suffix.endswith(".gz") else data)
        try:
            reader(path)
        except CorpusFormatError as error:
            assert str(error).startswith(str(path))  # the message names the file
            assert "\n" not in str(error)


READERS = {
    "conllu": lambda path: read_dependency_corpus("c", [path], "conllu"),
    "conllx": lambda path: read_dependency_corpus("c", [path], "conllx"),
    "corefud": read_corefud,
    "conll2012": read_conll2012,
    "gap": read_gap,
}


@pytest.mark.parametrize("name", list(READERS))
@SETTINGS
@given(data=INPUT, gz=st.booleans())
def test_any_bytes_are_read_or_refused_with_corpus_format_error(name: str, data: bytes, gz: bool) -> None:
    _read(READERS[name], data, ".conllu.gz" if gz else ".conllu")


@st.composite
def trees(draw) -> tuple[list[str], list[int], list[str]]:  # type: ignore[no-untyped-def]
    """A random dependency tree: forms, 1-based heads (0 = root), relations."""
    n = draw(st.integers(1, 12))
    order = draw(st.permutations(range(n)))
    heads = [0] * n
    for position, word in enumerate(order[1:], start=1):
        heads[word] = order[draw(st.integers(0, position - 1))] + 1  # attach to an earlier node
    alphabet = st.characters(blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp"), blacklist_characters="\t\n\r\ufeff")
    forms = draw(st.lists(st.text(alphabet, min_size=1, max_size=6), min_size=n, max_size=n))
    relations = draw(st.lists(st.sampled_from(["det", "nsubj", "obj", "amod", "case"]), min_size=n, max_size=n))
    relations[order[0]] = "root"
    return forms, heads, relations


@SETTINGS
@given(sentences=st.lists(trees(), min_size=1, max_size=4))
def test_a_valid_tree_round_trips(sentences: list[tuple[list[str], list[int], list[str]]]) -> None:
    lines = []
    for forms, heads, relations in sentences:
        for index, (form, head, relation) in enumerate(zip(forms, heads, relations), start=1):
            lines.append(f"{index}\t{form}\t_\tX\t_\t_\t{head}\t{relation}\t_\t_")
        lines.append("")
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "trees.conllu"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        corpus = read_dependency_corpus("trees", [path], "conllu")
    read = [
        (
            [word.form for word in segment.words],
            [0 if word.head is None else word.head + 1 for word in segment.words],
            [word.deprel for word in segment.words],
        )
        for segment in corpus.segments
    ]
    assert read == sentences
