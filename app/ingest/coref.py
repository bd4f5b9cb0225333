"""Coreference corpora (paper section 4.3): readers for three formats.

Three sources, one shape (`CorefDocument`: sentences of words + document-level mentions):
- CorefUD CoNLL-U (GUM, OntoGUM): brackets in MISC `Entity=`; GUM brackets carry
  `ID-etype-...` attributes, OntoGUM only the ID. The entity is the bracket ID (a string).
- CoNLL-2012 (OntoNotes layout, LitBank): `#begin document (name); part N` ... `#end
  document`, brackets `(12`, `12)`, `(12)` in the last column, `|`-joined; no dependencies.
- GAP tsv: one snippet per row; mentions A, B and the pronoun from character offsets.

A closing bracket closes the most recently opened mention with its ID, so a mention may
nest inside another of the same entity, and a mention may cross sentence boundaries (it may
not cross documents). Discontinuous mentions (`[1/2]`) are refused, not dropped.

Heads, types and segmentation are in coref_segments.py.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal, cast

from app.errors import CorpusFormatError
from app.ingest.conll import read_conll
from app.ingest.datasets import numbered_lines, open_text
from app.ingest.text import WORD_PATTERN
from app.types import Mention, MentionType, Word

CorefFormat = Literal["corefud", "conll2012", "gap"]
# parse(forms of one sentence) -> 0-based head per word within the sentence, None = root.
Parser = Callable[[list[str]], list[int | None]]
PieceCounter = Callable[[list[str]], list[int]]

# One bracket: `(ID` or `(ID-attrs` opens, with `)` it is a one-word mention; `ID)` closes.
# (The regex of shared/data/README.md section 2, with `|` as an optional separator.)
_BRACKET = re.compile(
    r"\((?P<id>[^()\-\[\]|]+)(?P<attrs>-[^()|]*)?(?P<close>\))?|(?P<cid>[^()\[\]|]+)\)|\|"
)
_BEGIN = re.compile(
    r"#\s*begin document\s*(?:\((?P<pname>.*)\)|(?P<name>[^;\s]*))\s*;?\s*(?:part\s+(?P<part>\d+))?\s*$"
)
_END = re.compile(r"#\s*end document")
NO_MENTION = {"", "-", "_"}
GAP_COLUMNS = (
    "ID", "Text", "Pronoun", "Pronoun-offset", "A", "A-offset", "A-coref",
    "B", "B-offset", "B-coref", "URL",
)  # fmt: skip


@dataclass(frozen=True)
class CorefDocument:
    """A document as read: `Word.head` is relative to its sentence (0-based, None for the
    root or unknown); mention start/end/head are document-level word offsets."""

    name: str
    sentences: list[list[Word]]
    mentions: list[Mention]

    @property
    def words(self) -> list[Word]:
        """All words in order, `sent_index` = sentence number in the document."""
        return [
            word if word.sent_index == number else replace(word, sent_index=number)
            for number, sentence in enumerate(self.sentences)
            for word in sentence
        ]

    def document_heads(self) -> list[int | None]:
        """Gold heads as document-level word offsets (None for roots and unknown)."""
        return [
            None if word.head is None else offset + word.head
            for offset, sentence in zip(self.sentence_starts, self.sentences)
            for word in sentence
        ]

    @property
    def sentence_starts(self) -> list[int]:
        starts, offset = [], 0
        for sentence in self.sentences:
            starts.append(offset)
            offset += len(sentence)
        return starts


def _bracket_tokens(value: str) -> list[tuple[str, str]]:
    """`(7-abstract-...(3)` -> [("open", "7"), ("open", "3"), ("close", "3")]; ValueError
    with the problem when the value is not a sequence of brackets."""
    if "[" in value:
        raise ValueError(f"discontinuous mentions are not supported: {value!r}")
    tokens, position = [], 0
    for match in _BRACKET.finditer(value):
        if match.start() != position:
            break
        position = match.end()
        if match.group("id"):
            tokens.append(("open", match.group("id")))
            if match.group("close"):
                tokens.append(("close", match.group("id")))
        elif match.group("cid"):
            tokens.append(("close", match.group("cid")))
    if position != len(value):
        raise ValueError(f"malformed coreference brackets {value!r} at character {position}")
    return tokens


class _OpenMentions:
    """Brackets of one document: a stack of open mentions per entity id."""

    def __init__(self, path: Path, locate: Callable[[int, int], int]):
        # locate(line hint, word index in sentence) -> exact line, only called for errors.
        self.path, self.locate = path, locate
        self.stacks: dict[str, list[tuple[int, tuple[int, int]]]] = {}
        self.mentions: list[Mention] = []

    def apply(self, value: str, word: int, where: tuple[int, int]) -> None:
        try:
            tokens = _bracket_tokens(value)
        except ValueError as error:
            raise CorpusFormatError(str(self.path), self.locate(*where), str(error)) from None
        for kind, entity in tokens:
            if kind == "open":
                self.stacks.setdefault(entity, []).append((word, where))
            elif not self.stacks.get(entity):
                raise CorpusFormatError(
                    str(self.path), self.locate(*where),
                    f"closing bracket '{entity})' for entity {entity!r}, which is not open",
                )  # fmt: skip
            else:
                start, _ = self.stacks[entity].pop()
                self.mentions.append(Mention(start, word, entity))

    def finish(self) -> list[Mention]:
        for entity, stack in self.stacks.items():
            if stack:
                raise CorpusFormatError(
                    str(self.path), self.locate(*stack[0][1]),
                    f"mention '({entity}' opened here is never closed in its document",
                )  # fmt: skip
        return sorted(self.mentions, key=lambda m: (m.start, m.end, m.entity))


def _conllu_word_line(path: Path, first_line: int, index: int) -> int:
    """Exact line of word `index` of the sentence whose first word is on `first_line`.

    read_conll keeps only the first word's line; multiword-token and empty-node lines make
    `first_line + index` wrong, so the file is read again (only to word an error message).
    """
    seen = -1
    with open_text(path) as handle:
        for number, raw in enumerate(handle, start=1):
            if number >= first_line and raw.split("\t", 1)[0].isdigit():
                seen += 1
                if seen == index:
                    return number
    return first_line + index


def _misc_value(misc: str, key: str) -> str | None:
    for item in misc.split("|"):
        name, _, value = item.partition("=")
        if name == key:
            return value
    return None


def read_corefud(path: Path) -> list[CorefDocument]:
    """CoNLL-U with CorefUD `Entity=` brackets; documents from `# newdoc id`, else the file.

    Empty nodes are skipped by read_conll, so a bracket on one would be lost; GUM and
    OntoGUM put none there (checked over the shared data).
    """
    documents: list[CorefDocument] = []
    name: str | None = None
    sentences: list[list[Word]] = []
    brackets = _OpenMentions(path, lambda first, index: _conllu_word_line(path, first, index))
    n_words = 0
    for sentence in read_conll(path, "conllu"):
        doc_name = sentence.doc_id or path.name
        if name is not None and doc_name != name:
            documents.append(CorefDocument(name, sentences, brackets.finish()))
            sentences, n_words = [], 0
            brackets = _OpenMentions(path, brackets.locate)
        name = doc_name
        sentences.append([replace(w, sent_index=len(sentences)) for w in sentence.words])
        for index, misc in enumerate(sentence.misc):
            value = _misc_value(misc, "Entity")
            if value:
                brackets.apply(value, n_words + index, (sentence.line, index))
        n_words += len(sentence.words)
    if name is not None:
        documents.append(CorefDocument(name, sentences, brackets.finish()))
    return documents


def _split_columns(line: str) -> list[str]:
    """TAB-separated when the line has a TAB (LitBank's empty 13th field survives)."""
    return line.split("\t") if "\t" in line else line.split()


def read_conll2012(path: Path) -> list[CorefDocument]:
    """CoNLL-2012 layout, plain or gzipped: one CorefDocument per (document, part), named
    `"<name> part <N>"` with N as an integer (`part 000` -> `part 0`)."""
    documents: list[CorefDocument] = []
    name: str | None = None
    begin_line = 0
    sentences: list[list[Word]] = []
    sentence: list[Word] = []
    width = 0  # column count of the current sentence's first line
    brackets = _OpenMentions(path, lambda line, _index: line)
    n_words = 0
    for number, line in numbered_lines(path):
        if line.startswith("#"):
            if begin := _BEGIN.match(line):
                if name is not None:
                    raise CorpusFormatError(str(path), number, f"#begin document inside {name!r}")
                doc = begin.group("pname") or begin.group("name") or path.name
                name, begin_line = f"{doc} part {int(begin.group('part') or 0)}", number
                sentences, sentence, n_words = [], [], 0
                brackets = _OpenMentions(path, lambda line, _index: line)
            elif _END.match(line):
                if name is None:
                    raise CorpusFormatError(str(path), number, "#end document without #begin")
                if sentence:
                    sentences.append(sentence)
                documents.append(CorefDocument(name, sentences, brackets.finish()))
                name, sentence = None, []
            continue
        if not line.strip():
            if sentence:
                sentences.append(sentence)
                sentence = []
            continue
        if name is None:
            raise CorpusFormatError(str(path), number, "word line outside #begin/#end document")
        columns = _split_columns(line)
        if len(columns) < 5:
            raise CorpusFormatError(
                str(path), number,
                f"expected at least 5 columns (document, part, index, word, ..., coreference), found {len(columns)}",
            )  # fmt: skip
        if not sentence:
            width = len(columns)
        elif len(columns) != width:
            raise CorpusFormatError(
                str(path), number,
                f"expected {width} columns like the sentence's first line, found {len(columns)}",
            )  # fmt: skip
        pos = columns[4] if columns[4] not in NO_MENTION else None
        sentence.append(Word(form=columns[3], xpos=pos, sent_index=len(sentences)))
        coref = columns[-1].strip()
        if coref not in NO_MENTION:
            brackets.apply(coref, n_words, (number, 0))
        n_words += 1
    if name is not None:
        raise CorpusFormatError(str(path), begin_line, f"document {name!r} has no #end document")
    return documents


def _gap_span(
    path: Path, number: int, text: str, bounds: tuple[dict[int, int], dict[int, int]],
    column: str, string: str, offset: str,
) -> tuple[int, int]:  # fmt: skip
    """Character span of a GAP name/pronoun -> (first word, last word)."""
    starts, ends = bounds
    try:
        first = int(offset)
    except ValueError:
        raise CorpusFormatError(
            str(path), number, f"{column}-offset is not an integer: {offset!r}"
        ) from None
    last = first + len(string)
    if text[first:last] != string or first not in starts or last not in ends:
        raise CorpusFormatError(
            str(path), number,
            f"{column} {string!r} at character {first} does not match the words of Text there",
        )  # fmt: skip
    return starts[first], ends[last]


def _gap_flag(path: Path, number: int, column: str, value: str) -> bool:
    if value.upper() not in {"TRUE", "FALSE"}:
        raise CorpusFormatError(
            str(path), number, f"{column} must be TRUE or FALSE, found {value!r}"
        )
    return value.upper() == "TRUE"


def _gap_row(path: Path, number: int, columns: list[str]) -> CorefDocument:
    """One row: words as `split_words` gives them; A and B are names, so 'proper'."""
    row = dict(zip(GAP_COLUMNS, columns))
    text = row["Text"]
    matches = list(WORD_PATTERN.finditer(text))
    bounds = (
        {m.start(): i for i, m in enumerate(matches)},
        {m.end(): i for i, m in enumerate(matches)},
    )
    a_coref = _gap_flag(path, number, "A-coref", row["A-coref"])
    b_coref = _gap_flag(path, number, "B-coref", row["B-coref"])
    if a_coref and b_coref:
        raise CorpusFormatError(str(path), number, "A-coref and B-coref are both TRUE")
    mentions = []
    for column, entity, kind in (
        ("A", "A", "proper"), ("B", "B", "proper"),
        ("Pronoun", "A" if a_coref else "B" if b_coref else "P", "pronoun"),
    ):  # fmt: skip
        start, end = _gap_span(
            path, number, text, bounds, column, row[column], row[f"{column}-offset"]
        )
        mentions.append(Mention(start, end, entity, mention_type=cast("MentionType", kind)))
    words = [Word(form=m.group()) for m in matches]
    return CorefDocument(row["ID"], [words], sorted(mentions, key=lambda m: (m.start, m.end)))


def read_gap(path: Path) -> list[CorefDocument]:
    """GAP tsv: one CorefDocument (one sentence) per row, named by its ID."""
    documents = []
    for number, line in numbered_lines(path):
        columns = line.split("\t")
        if number == 1:
            if tuple(columns) != GAP_COLUMNS:
                raise CorpusFormatError(
                    str(path), 1, f"expected the GAP header {'/'.join(GAP_COLUMNS)}"
                )
        elif line.strip():
            if len(columns) != len(GAP_COLUMNS):
                raise CorpusFormatError(
                    str(path),
                    number,
                    f"expected {len(GAP_COLUMNS)} TAB-separated columns, found {len(columns)}",
                )
            documents.append(_gap_row(path, number, columns))
    return documents


READERS: dict[str, Callable[[Path], list[CorefDocument]]] = {
    "corefud": read_corefud,
    "conll2012": read_conll2012,
    "gap": read_gap,
}
