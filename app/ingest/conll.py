"""Dependency treebank reader: CoNLL-U and CoNLL-X, plain or gzipped.

Reads gold tokens and keeps the annotation columns (lemma, UPOS, XPOS, HEAD, DEPREL, and
MISC for the coreference reader). Multiword-token ranges (`3-4`) and empty nodes (`8.1`)
are not syntactic words and are skipped, as UD's own statistics do. Any malformed line is a
CorpusFormatError naming the file and line.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, cast

from app.errors import CorpusFormatError
from app.ingest.datasets import content_sha256, numbered_lines
from app.types import CorpusData, Document, Segment, Word

ConllFormat = Literal["conllu", "conllx"]
MIN_COLUMNS = {"conllu": 10, "conllx": 8}


@dataclass
class ConllSentence:
    words: list[Word]
    misc: list[str]
    line: int  # line number of the sentence's first word
    sent_id: str | None = None
    text: str | None = None
    doc_id: str | None = None
    comments: list[str] = field(default_factory=list)


def _parse_head(value: str, path: Path, line: int) -> int | None | str:
    """'0' -> root (None); '_' -> unannotated; n -> 0-based index n - 1."""
    if value == "_":
        return "_"
    try:
        head = int(value)
    except ValueError:
        raise CorpusFormatError(
            str(path), line, f"HEAD must be an integer or '_', found {value!r}"
        ) from None
    if head < 0:
        raise CorpusFormatError(str(path), line, f"HEAD must not be negative, found {head}")
    return None if head == 0 else head - 1


def check_tree(heads: Sequence[int | None], lines: Sequence[int], path: str) -> None:
    """One root, no word its own head, no cycle: otherwise every head score is wrong.

    `heads` are 0-based (None = the root); the error names the line of the first bad word.
    """
    roots = [index for index, head in enumerate(heads) if head is None]
    for index, head in enumerate(heads):
        if head == index:
            raise CorpusFormatError(path, lines[index], f"word {index + 1} is its own head")
    if len(roots) > 1:
        raise CorpusFormatError(
            path,
            lines[roots[1]],
            f"several roots: words {', '.join(str(r + 1) for r in roots)} have HEAD 0 "
            "(a tree has exactly one)",
        )
    for start in range(len(heads)):
        seen: set[int] = set()
        node: int | None = start
        while node is not None:
            if node in seen:
                raise CorpusFormatError(
                    path,
                    lines[node],
                    f"the heads form a cycle through word {node + 1} (no path to the root)",
                )
            seen.add(node)
            node = heads[node]
    if not roots:
        raise CorpusFormatError(path, lines[0], "no root: no word has HEAD 0")


class _SentenceBuilder:
    def __init__(self, path: Path, fmt: ConllFormat):
        self.path, self.format = path, fmt
        self.reset()

    def reset(self) -> None:
        self.words: list[Word] = []
        self.heads: list[int | None | str] = []
        self.lines: list[int] = []
        self.misc: list[str] = []
        self.comments: list[str] = []
        self.comment_line: int | None = None

    def add_comment(self, text: str, line: int) -> None:
        if self.comment_line is None:
            self.comment_line = line
        self.comments.append(text)

    def add_word(self, columns: list[str], line: int) -> None:
        word_id = columns[0]
        if "-" in word_id or "." in word_id:
            return  # multiword-token range or empty node: not a syntactic word
        expected = len(self.words) + 1
        if word_id != str(expected):
            raise CorpusFormatError(
                str(self.path),
                line,
                f"word ids must run 1, 2, 3, ...; expected {expected}, found {word_id!r}",
            )
        self.heads.append(_parse_head(columns[6], self.path, line))
        self.lines.append(line)
        upos, xpos = columns[3], columns[4]
        self.words.append(
            Word(
                form=columns[1],
                lemma=None if columns[2] == "_" and columns[1] != "_" else columns[2],
                upos=None if upos == "_" else upos,
                xpos=None if xpos == "_" else xpos,
                deprel=None if columns[7] == "_" else columns[7],
            )
        )
        self.misc.append(columns[9] if len(columns) > 9 else "_")

    def finish(self, doc_id: str | None) -> ConllSentence | None:
        if not self.words:
            if self.comments:
                raise CorpusFormatError(
                    str(self.path), self.comment_line, "sentence has comment lines but no words"
                )
            return None
        n = len(self.words)
        annotated = [head != "_" for head in self.heads]
        if any(annotated) and not all(annotated):
            line = self.lines[annotated.index(False)]
            raise CorpusFormatError(
                str(self.path), line, "HEAD is '_' here but given for other words of the sentence"
            )
        words = self.words
        if all(annotated):
            heads = cast("list[int | None]", self.heads)  # no '_' among them
            for index, (head, line) in enumerate(zip(heads, self.lines)):
                if head is not None and not 0 <= head < n:
                    raise CorpusFormatError(
                        str(self.path),
                        line,
                        f"HEAD {head + 1} points outside the sentence of {n} words",
                    )
                if words[index].deprel is None:
                    raise CorpusFormatError(
                        str(self.path), line, "DEPREL is missing where HEAD is given"
                    )
            check_tree(heads, self.lines, str(self.path))
            words = [
                Word(w.form, w.lemma, w.upos, w.xpos, head=h, deprel=w.deprel)
                for w, h in zip(words, heads)
            ]
        sentence = ConllSentence(
            words=words, misc=self.misc, line=self.lines[0], doc_id=doc_id, comments=self.comments
        )
        for comment in self.comments:
            key, _, value = comment.partition("=")
            key = key.strip("# ").strip()
            if key == "sent_id":
                sentence.sent_id = value.strip()
            elif key == "text":
                sentence.text = value.strip()
        self.reset()
        return sentence


def read_conll(path: Path, fmt: ConllFormat = "conllu") -> Iterator[ConllSentence]:
    """Yield the sentences of a CoNLL-U / CoNLL-X file."""
    builder = _SentenceBuilder(path, fmt)
    doc_id: str | None = None
    for line_number, line in numbered_lines(path):
        if not line.strip():
            sentence = builder.finish(doc_id)
            if sentence is not None:
                yield sentence
            continue
        if line.startswith("#") and not builder.words:
            if line.startswith("# newdoc"):
                _, _, value = line.partition("=")
                doc_id = value.strip() or f"{path.name}:{line_number}"
            builder.add_comment(line, line_number)
            continue
        columns = line.split("\t")
        if len(columns) < MIN_COLUMNS[fmt]:
            raise CorpusFormatError(
                str(path),
                line_number,
                f"expected {MIN_COLUMNS[fmt]} tab-separated {fmt.upper()} columns, found {len(columns)}",
            )
        builder.add_word(columns, line_number)
    sentence = builder.finish(doc_id)
    if sentence is not None:
        yield sentence


def sentence_segment(sentence: ConllSentence, fallback_label: str) -> Segment:
    return Segment(
        label=sentence.sent_id or fallback_label, words=sentence.words, text=sentence.text
    )


def read_dependency_corpus(name: str, paths: Sequence[Path], fmt: ConllFormat) -> CorpusData:
    """A treebank as a corpus: one segment per sentence, documents from `# newdoc` or files."""
    documents: list[Document] = []
    for path in paths:
        current: Document | None = None
        n_sentences = 0
        for sentence in read_conll(path, fmt):
            doc_name = sentence.doc_id or path.name
            if current is None or current.name != doc_name:
                current = Document(name=doc_name, segments=[])
                documents.append(current)
            current.segments.append(sentence_segment(sentence, f"{path.name}:{sentence.line}"))
            n_sentences += 1
        if not n_sentences:
            raise CorpusFormatError(str(path), None, f"no sentences: not a {fmt.upper()} treebank")
    has_dependencies = any(
        word.deprel is not None for doc in documents for seg in doc.segments for word in seg.words
    )
    return CorpusData(
        name=name,
        format=fmt,
        source=", ".join(str(path) for path in paths),
        sha256=combined_sha256(paths),
        documents=documents,
        dependency_scheme=("ud" if fmt == "conllu" else "conllx") if has_dependencies else None,
    )


def combined_sha256(paths: Sequence[Path]) -> str:
    """One checksum over several files' contents (order matters)."""
    import hashlib

    digest = hashlib.sha256()
    for path in paths:
        digest.update(content_sha256(path).encode())
    return digest.hexdigest()
