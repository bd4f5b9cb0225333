"""Wikipedia segment pairs for the surface statistics (paper section 3).

The paper used 1000 random segments of at most 128 word pieces, formatted
`[CLS] paragraph-1 [SEP] paragraph-2 [SEP]` (or the model's own special tokens). We build them from the real (shortened)
enwiki dump inside the gensim wheel, parsed and cleaned with gensim's own wiki tools:
every pair of consecutive paragraphs of an article is a candidate; `n_segments` are
sampled with a fixed seed; a pair over the budget is trimmed the way BERT's pre-training
data is, dropping words from the end of the longer paragraph until it fits. The number of
trimmed words is recorded on the corpus.
"""

from __future__ import annotations

import bz2
import hashlib
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from app.ingest.text import pair_segment, split_words
from app.types import CorpusData, Document

DUMP_NAME = "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
# Shorter lines are headings' leftovers, captions or list items, not paragraphs.
MIN_PARAGRAPH_WORDS = 10
# Room for the special tokens of a pair: BERT adds three ([CLS] p1 [SEP] p2 [SEP]),
# RoBERTa/MPNet four (<s> p1 </s></s> p2 </s>). Reserving four keeps every segment within
# 128 tokens for both (BERT inputs are at most 127).
N_SPECIAL = 4


def gensim_dump_path() -> Path:
    import gensim

    return Path(gensim.__file__).parent / "test" / "test_data" / DUMP_NAME


def article_paragraphs(dump: Path) -> Iterator[tuple[str, list[str]]]:
    """(title, paragraphs) of each article, markup stripped by gensim's filter_wiki."""
    from gensim.corpora.wikicorpus import extract_pages, filter_wiki

    with bz2.BZ2File(dump) as handle:
        for title, text, _page_id in extract_pages(handle, filter_namespaces=("0",)):
            if text.lstrip().upper().startswith("#REDIRECT"):
                continue
            clean = re.sub(
                r"'{2,}", "", filter_wiki(text)
            )  # bold/italic quotes survive filter_wiki
            paragraphs = []
            for block in re.split(r"\n\s*\n", clean):
                lines = [
                    line.strip()
                    for line in block.splitlines()
                    if not line.strip().startswith("=") and len(line.split()) >= MIN_PARAGRAPH_WORDS
                ]
                if lines:
                    paragraphs.append(" ".join(lines))
            yield title, paragraphs


@dataclass(frozen=True)
class WikiConfig:
    n_segments: int = 1000
    seed: int = 0
    max_tokens: int = 128


def _trim_pair(
    first: list[str], second: list[str], pieces: list[int], budget: int
) -> tuple[int, int]:
    """Word counts (a, b) kept of each paragraph so the pair's pieces fit `budget`."""
    first_pieces, second_pieces = pieces[: len(first)], pieces[len(first) :]
    keep_a, keep_b = len(first), len(second)
    total_a, total_b = sum(first_pieces), sum(second_pieces)
    while total_a + total_b > budget and (keep_a > 1 or keep_b > 1):
        if (total_a >= total_b and keep_a > 1) or keep_b <= 1:
            keep_a -= 1
            total_a -= first_pieces[keep_a]
        else:
            keep_b -= 1
            total_b -= second_pieces[keep_b]
    return keep_a, keep_b


def build_wiki_segments(
    name: str, tokenizer, config: WikiConfig, dump: Path | None = None
) -> CorpusData:
    """Sample and trim paragraph pairs; `tokenizer` measures word pieces."""
    dump = dump or gensim_dump_path()
    candidates: list[tuple[str, int, str, str]] = []
    for title, paragraphs in article_paragraphs(dump):
        for index, (first_text, second_text) in enumerate(zip(paragraphs, paragraphs[1:])):
            candidates.append((title, index, first_text, second_text))
    rng = random.Random(config.seed)
    chosen = rng.sample(candidates, min(config.n_segments, len(candidates)))
    budget = config.max_tokens - N_SPECIAL
    documents: dict[str, Document] = {}
    trimmed_words = 0
    for title, index, first_text, second_text in chosen:
        first, second = split_words(first_text), split_words(second_text)
        word_ids = tokenizer(
            first + second, is_split_into_words=True, add_special_tokens=False
        ).word_ids()
        pieces = [0] * (len(first) + len(second))
        for word_id in word_ids:
            pieces[word_id] += 1
        keep_a, keep_b = _trim_pair(first, second, pieces, budget)
        trimmed_words += len(first) - keep_a + len(second) - keep_b
        segment = pair_segment(f"{title} #{index}", first[:keep_a], second[:keep_b])
        documents.setdefault(title, Document(name=title, segments=[])).segments.append(segment)
    digest = hashlib.sha256(dump.read_bytes())
    digest.update(repr((config, type(tokenizer).__name__, len(tokenizer))).encode())
    return CorpusData(
        name=name,
        format="wiki",
        source=str(dump),
        sha256=digest.hexdigest(),
        documents=list(documents.values()),
        config={
            "n_segments": config.n_segments,
            "seed": config.seed,
            "max_tokens": config.max_tokens,
            "candidates": len(candidates),
            "tokenizer": Path(str(getattr(tokenizer, "name_or_path", ""))).name,
        },
        dropped={"words trimmed to fit the token budget": trimmed_words} if trimmed_words else {},
    )
