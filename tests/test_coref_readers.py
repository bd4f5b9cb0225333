"""Coreference readers (CorefUD, CoNLL-2012, GAP), mention heads and types, segmentation.

The fixtures in tests/fixtures/coref/ are hand-written; the expected spans below are
document-level word offsets read off them by hand.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from app.errors import CorpusFormatError
from app.ingest.coref import CorefDocument, read_conll2012, read_corefud, read_gap
from app.ingest.coref_segments import (
    find_mention_heads,
    mention_type,
    read_coref_corpus,
    rule_head,
    segment_document,
)
from app.types import Mention, Word
from tests.conftest import SHARED_DATA, needs_shared_data

FIXTURES = Path(__file__).parent / "fixtures" / "coref"


def spans(doc: CorefDocument) -> list[tuple[int, int, str]]:
    return [(m.start, m.end, m.entity) for m in doc.mentions]


def heads_and_types(doc: CorefDocument) -> list[tuple[int | None, str | None, str | None]]:
    return [(m.head, m.mention_type, m.head_source) for m in doc.mentions]


def one_piece_each(forms: list[str]) -> list[int]:
    return [1] * len(forms)


# --- CorefUD -------------------------------------------------------------------------------


def test_corefud_gum_attributes_and_ontogum_bare_ids() -> None:
    gum, onto = read_corefud(FIXTURES / "corefud.conllu")
    assert (gum.name, onto.name) == ("doc_gum", "doc_onto")
    # doc_gum: Mary0 Smith1 saw2 her3 old4 dog5 .6 | It7 barked8 .9
    assert [len(s) for s in gum.sentences] == [7, 3]
    assert [w.sent_index for w in gum.sentences[1]] == [1, 1, 1]
    assert gum.sentences[1][0].head == 1  # sentence-relative: It -> barked
    # Nested: "her" (entity 1, one word) inside "her old dog" (entity 2).
    assert spans(gum) == [(0, 1, "1"), (3, 3, "1"), (3, 5, "2"), (7, 7, "2")]
    # doc_onto: The0 company1 's2 chief3 said4 they5 ca6 n't7 stop8 .9 (the range 7-8 is no word)
    assert [w.form for w in onto.words][5:8] == ["they", "ca", "n't"]
    # Two mentions open on "The": "The company 's" (6) inside "The company 's chief" (5).
    assert spans(onto) == [(0, 2, "6"), (0, 3, "5"), (5, 5, "6")]


def test_corefud_heads_from_gold_dependencies() -> None:
    gum, onto = (find_mention_heads(doc) for doc in read_corefud(FIXTURES / "corefud.conllu"))
    gold = "gold-dependencies"
    # "Mary Smith": Smith's head (Mary) is inside, Mary's (saw) outside -> Mary (flat: left).
    assert heads_and_types(gum) == [
        (0, "proper", gold),
        (3, "pronoun", gold),
        (5, "nominal", gold),  # her -> dog, old -> dog, dog -> saw (outside)
        (7, "pronoun", gold),
    ]
    # "The company 's": company's head (chief) is outside the span -> company.
    assert heads_and_types(onto) == [
        (1, "nominal", gold),
        (3, "nominal", gold),
        (5, "pronoun", gold),
    ]


def write(tmp_path: Path, name: str, lines: list[str]) -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def conllu_word(number: str, form: str, misc: str, head: str = "0", deprel: str = "root") -> str:
    return "\t".join([number, form, form, "X", "X", "_", head, deprel, "_", misc])


@pytest.mark.parametrize(
    ("misc", "line", "problem"),
    [
        ("Entity=(1-person-new", 5, "never closed"),  # opened on line 5, document ends
        ("Entity=3)", 5, "'3)' for entity '3', which is not open"),
        ("Entity=(1[1/2]-person-new)", 5, "discontinuous mentions are not supported"),
        ("Entity=(1((", 5, "malformed coreference brackets"),
    ],
)
def test_corefud_malformed_brackets_name_file_and_exact_line(
    tmp_path: Path, misc: str, line: int, problem: str
) -> None:
    # Line 3 is a multiword range, so the bad word (word 2 of a sentence whose first word is
    # on line 2) sits on line 5, not 2 + 2.
    path = write(
        tmp_path,
        "bad.conllu",
        [
            "# newdoc id = d",
            conllu_word("1", "I", "_", "2", "nsubj"),
            "2-3\tdon't\t_\t_\t_\t_\t_\t_\t_\t_",
            conllu_word("2", "do", "_"),
            conllu_word("3", "n't", misc, "2", "advmod"),
            "",
        ],
    )
    with pytest.raises(CorpusFormatError) as caught:
        read_corefud(path)
    assert str(caught.value).startswith(f"{path}:{line}: ")
    assert problem in str(caught.value)


def test_corefud_mention_must_close_in_its_own_document(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "two.conllu",
        ["# newdoc id = a", conllu_word("1", "Hi", "Entity=(1"), "",
         "# newdoc id = b", conllu_word("1", "Yo", "Entity=1)"), ""],
    )  # fmt: skip
    with pytest.raises(CorpusFormatError, match=r"two\.conllu:2: .*never closed"):
        read_corefud(path)


# --- CoNLL-2012 ----------------------------------------------------------------------------


def test_conll2012_parts_joined_brackets_and_pos() -> None:
    part0, part1 = read_conll2012(FIXTURES / "ontonotes.conll")
    assert part0.name == "nw/toy/00/toy_0001 part 0" and part1.name.endswith(" part 1")
    # John0 likes1 his2 sister3 .4 | She5 smiled6 .7 ; "(0)|(1" on "his".
    assert spans(part0) == [(0, 0, "0"), (2, 2, "0"), (2, 3, "1"), (5, 5, "1")]
    assert [w.xpos for w in part0.sentences[0]] == ["NNP", "VBZ", "PRP$", "NN", "."]
    assert all(w.head is None and w.deprel is None for w in part0.words)
    # The0 Smiths1 met2 the3 cats4 .5 | They6 purred7 .8 ; bracket ids restart per part.
    assert spans(part1) == [(0, 1, "2"), (3, 4, "3"), (6, 6, "3")]
    rule = "last-word"
    assert heads_and_types(find_mention_heads(part0)) == [
        (0, "proper", rule), (2, "pronoun", rule), (3, "nominal", rule), (5, "pronoun", rule),
    ]  # fmt: skip
    assert heads_and_types(find_mention_heads(part1)) == [
        (1, "proper", rule), (4, "nominal", rule), (6, "pronoun", rule),
    ]  # fmt: skip


def test_conll2012_litbank_trailing_tab_and_gzip(tmp_path: Path) -> None:
    packed = tmp_path / "1_tiny_brat.conll.gz"
    packed.write_bytes(gzip.compress((FIXTURES / "litbank.conll").read_bytes()))
    (doc,) = read_conll2012(packed)
    assert doc.name == "1_tiny_brat part 0"
    assert [len(s) for s in doc.sentences] == [15, 7, 3]
    # Sir0 Walter1 Elliot2 ,3 of4 Kellynch5 Hall6 ,7 was8 a9 man10 who11 never12 read13 .14
    # He15 loved16 the17 Baronetage18 of19 England20 .21 | Walter22 smiled23 .24
    assert spans(doc) == [
        (0, 2, "0"), (5, 6, "1"), (9, 13, "2"), (15, 15, "0"),
        (17, 20, "3"), (20, 20, "4"), (22, 22, "0"),
    ]  # fmt: skip
    # No POS, no dependencies: the rule head stops before "who" / "of"; types by spelling.
    # "Walter" opens its sentence but is capitalised mid-sentence elsewhere -> proper.
    assert [(m.head, m.mention_type) for m in find_mention_heads(doc).mentions] == [
        (2, "proper"), (6, "proper"), (10, "nominal"), (15, "pronoun"),
        (18, "proper"), (20, "proper"), (22, "proper"),
    ]  # fmt: skip


def test_conll2012_silver_parser_hook() -> None:
    part1 = read_conll2012(FIXTURES / "ontonotes.conll")[1]

    def first_word_heads_all(forms: list[str]) -> list[int | None]:
        return [None] + [0] * (len(forms) - 1)

    found = find_mention_heads(part1, parse=first_word_heads_all)
    # "the cats" (3-4): both words' heads (word 0) are outside -> the leftmost, "the".
    assert [(m.head, m.head_source) for m in found.mentions] == [
        (0, "silver-dependencies"), (3, "silver-dependencies"), (6, "silver-dependencies"),
    ]  # fmt: skip
    assert all(w.head is None for w in found.words)  # silver heads are not stored


@pytest.mark.parametrize(
    ("lines", "line", "problem"),
    [
        (["#begin document (d); part 0", "d 0 0 Hi - (5", "", "#end document"], 2, "never closed"),
        (["#begin document (d); part 0", "d 0 0 Hi - 7)", "#end document"], 2, "not open"),
        (
            ["#begin document (d); part 0", "d 0 0 Hi - -", "d 0 Hi", "#end document"],
            3,
            "at least 5",
        ),
        (["#begin document (d); part 0", "d 0 0 Hi - -", "d 0 1 x - - -"], 3, "expected 6 columns"),
        (["#begin document (d); part 0", "d 0 0 Hi - -"], 1, "no #end document"),
        (["d 0 0 Hi - -"], 1, "outside #begin"),
    ],
)
def test_conll2012_malformed(tmp_path: Path, lines: list[str], line: int, problem: str) -> None:
    path = write(tmp_path, "bad.conll", lines)
    with pytest.raises(CorpusFormatError) as caught:
        read_conll2012(path)
    assert str(caught.value).startswith(f"{path}:{line}: ") and problem in str(caught.value)


# --- GAP -----------------------------------------------------------------------------------


def test_gap_rows_offsets_and_entities() -> None:
    rows = read_gap(FIXTURES / "gap.tsv")
    assert [doc.name for doc in rows] == ["toy-1", "toy-2", "toy-3"]
    # Anna0 Smith1 met2 Bob3 Jones4 in5 Paris6 .7 Later8 she9 called10 him11 .12
    assert spans(rows[0]) == [(0, 1, "A"), (3, 4, "B"), (9, 9, "A")]  # A-coref TRUE
    # When0 Carl1 '2 s3 sister4 Dana5 arrived6 ,7 he8 greeted9 her10 .11
    assert [w.form for w in rows[1].words][1:4] == ["Carl", "'", "s"]
    assert spans(rows[1]) == [(1, 1, "A"), (5, 5, "B"), (10, 10, "B")]  # B-coref TRUE
    # Eve0 thanked1 Fay2 after3 Gus4 praised5 her6 .7 : neither -> the pronoun is its own.
    assert spans(rows[2]) == [(0, 0, "A"), (2, 2, "B"), (6, 6, "P")]
    found = find_mention_heads(rows[0])
    assert heads_and_types(found) == [
        (1, "proper", "last-word"), (4, "proper", "last-word"), (9, "pronoun", "last-word"),
    ]  # fmt: skip


def test_gap_offset_that_does_not_match_names_the_row(tmp_path: Path) -> None:
    lines = (FIXTURES / "gap.tsv").read_text().splitlines()
    columns = lines[2].split("\t")
    columns[5] = "6"  # A "Carl" is at 5, not 6
    path = write(tmp_path, "gap.tsv", [lines[0], lines[1], "\t".join(columns)])
    with pytest.raises(CorpusFormatError, match=r"gap\.tsv:3: A 'Carl' at character 6"):
        read_gap(path)
    path = write(tmp_path, "short.tsv", [lines[0], "toy\tText only"])
    with pytest.raises(CorpusFormatError, match=r"short\.tsv:2: expected 11"):
        read_gap(path)


# --- heads and types without POS or parse --------------------------------------------------


def test_rule_head_skips_postmodifiers_punctuation_and_possessives() -> None:
    assert rule_head(["the", "king", "'s"], 0, 2) == 1
    assert rule_head(["Pauline", "'", "s"], 0, 2) == 0  # split_words' "'s"
    assert rule_head(["a", "man", "who", "never", "read"], 0, 4) == 1
    assert rule_head(["Sir", "Walter", "Elliot", ","], 0, 3) == 2
    assert rule_head(["x", "the", "Bank", "of", "England"], 1, 4) == 2
    assert rule_head(["of"], 0, 0) == 0  # never empty


def test_mention_type_pos_first_then_spelling() -> None:
    tagged = [Word("They", upos="PRON"), Word("Paris", xpos="NNP"), Word("It", upos="NOUN")]
    assert [mention_type(tagged, k) for k in range(3)] == ["pronoun", "proper", "nominal"]
    bare = [
        Word(f, sent_index=i)
        for f, i in [("The", 0), ("cat", 0), ("saw", 0), ("Tom", 0), (".", 0), ("Tom", 1)]
    ]
    assert [mention_type(bare, k) for k in (0, 1, 3, 5)] == [
        "nominal",
        "nominal",
        "proper",
        "proper",
    ]
    assert mention_type([Word("Her")], 0) == "pronoun"


# --- segmentation --------------------------------------------------------------------------


def toy_document() -> CorefDocument:
    """Sentences "A b c ." / "D e f" / "G h i j ." (words 0-3 / 4-6 / 7-11) with heads."""

    def sentence(forms: str, heads: list[int | None]) -> list[Word]:
        return [
            Word(form, head=head, deprel="root" if head is None else "dep")
            for form, head in zip(forms.split(), heads)
        ]

    return CorefDocument(
        "toy",
        [
            sentence("A b c .", [1, 2, None, 2]),
            sentence("D e f", [2, 2, None]),
            sentence("G h i j .", [1, None, 1, 1, 1]),
        ],
        [
            Mention(0, 1, "x"),
            Mention(2, 4, "y"),  # crosses the first sentence boundary
            Mention(4, 5, "z"),
            Mention(5, 6, "x"),
            Mention(8, 9, "z"),
        ],
    )


def test_truncate_keeps_the_longest_prefix_and_counts_the_rest() -> None:
    # 8 tokens - [CLS] - [SEP] = 6 pieces, one per word: words 0-5 are kept.
    (segment,), dropped = segment_document(toy_document(), one_piece_each, max_tokens=8)
    assert segment.label == "toy [0-5]"
    assert segment.forms == ["A", "b", "c", ".", "D", "e"]
    assert [w.sent_index for w in segment.words] == [0, 0, 0, 0, 1, 1]
    assert [w.head for w in segment.words] == [1, 2, None, 2, None, None]  # D, e -> f is cut
    assert [(m.start, m.end) for m in segment.mentions] == [(0, 1), (2, 4), (4, 5)]
    assert dropped == {
        "words after the truncation point": 6,
        "mentions crossing the segment cut": 1,  # (5, 6)
        "mentions after the truncation point": 1,  # (8, 9)
        "dependency heads outside the segment": 2,
    }


def test_truncate_counts_pieces_not_words() -> None:
    def pieces(forms: list[str]) -> list[int]:
        return [3 if form == "b" else 1 for form in forms]

    (segment,), dropped = segment_document(toy_document(), pieces, max_tokens=8)
    assert segment.forms == ["A", "b", "c", "."]  # 1 + 3 + 1 + 1 = 6
    assert dropped["words after the truncation point"] == 8
    segments, dropped = segment_document(
        toy_document(), lambda forms: [7] * len(forms), max_tokens=8
    )
    assert segments == [] and dropped["documents with no word inside the budget"] == 1
    assert dropped["words after the truncation point"] == 12


def test_windows_cut_at_sentence_boundaries() -> None:
    doc = find_mention_heads(toy_document())
    segments, dropped = segment_document(doc, one_piece_each, max_tokens=8, mode="windows")
    # 4 + 3 > 6 and 3 + 5 > 6: one window per sentence.
    assert [s.label for s in segments] == ["toy [0-3]", "toy [4-6]", "toy [7-11]"]
    assert [[(m.start, m.end, m.entity, m.head) for m in s.mentions] for s in segments] == [
        [(0, 1, "x", 1)],
        [(0, 1, "z", 0), (1, 2, "x", 2)],  # "D e": both heads (f) outside -> leftmost, D
        [(1, 2, "z", 1)],
    ]
    assert [w.head for w in segments[2].words] == [1, None, 1, 1, 1]
    assert all(w.sent_index == 0 for s in segments for w in s.words)
    assert dropped == {"mentions crossing the segment cut": 1}


def test_windows_split_a_long_sentence_at_word_boundaries() -> None:
    forms = "a b c d HUGE e f".split()
    doc = CorefDocument(
        "long",
        [[Word(f, head=None if i == 0 else 0, deprel="dep") for i, f in enumerate(forms)]],
        [Mention(2, 3, "m"), Mention(5, 6, "n")],
    )

    def pieces(words: list[str]) -> list[int]:
        return [9 if w == "HUGE" else 1 for w in words]

    segments, dropped = segment_document(doc, pieces, max_tokens=5, mode="windows")
    # Budget 3: "a b c" | "d" | "HUGE" (alone, over budget) | "e f"
    assert [s.forms for s in segments] == [["a", "b", "c"], ["d"], ["HUGE"], ["e", "f"]]
    assert [(m.start, m.end) for m in segments[3].mentions] == [(0, 1)]
    assert dropped == {
        "words longer than the token budget": 1,
        "mentions crossing the segment cut": 1,  # (2, 3) spans "c | d"
        "dependency heads outside the segment": 4,  # d, HUGE, e, f -> a
    }


def test_read_coref_corpus_sums_what_was_dropped() -> None:
    corpus = read_coref_corpus(
        "toy", [FIXTURES / "corefud.conllu"], "corefud", one_piece_each, max_tokens=8
    )
    assert [d.name for d in corpus.documents] == ["doc_gum", "doc_onto"]
    assert corpus.dependency_scheme == "ud" and corpus.has_coreference
    assert corpus.config == {"max_tokens": 8, "n_special": 2, "mode": "truncate"}
    assert corpus.dropped == {
        "words after the truncation point": 8,
        "mentions after the truncation point": 1,  # "It" of doc_gum
        "dependency heads outside the segment": 1,  # they -> stop
    }
    segment = corpus.documents[0].segments[0]
    assert [(m.head, m.mention_type) for m in segment.mentions] == [
        (0, "proper"), (3, "pronoun"), (5, "nominal"),
    ]  # fmt: skip
    litbank = read_coref_corpus("lit", [FIXTURES / "litbank.conll"], "conll2012", one_piece_each)
    assert litbank.dependency_scheme is None and litbank.dropped == {}


def test_truncated_documents_parse_only_the_sentences_they_keep() -> None:
    # 1_tiny_brat: sentences of 15, 7 and 3 words (0-14, 15-21, 22-24); one piece each and a
    # budget of 18 words cut inside the second sentence, so the third is never parsed.
    parsed: list[list[str]] = []

    def first_word_heads(forms: list[str]) -> list[int | None]:
        parsed.append(forms)
        return [None] + [0] * (len(forms) - 1)

    path = FIXTURES / "litbank.conll"
    corpus = read_coref_corpus("lit", [path], "conll2012", one_piece_each, max_tokens=20,
                               parse=first_word_heads)
    assert [len(forms) for forms in parsed] == [15, 7]  # the straddling sentence whole
    # The same mentions as parsing the whole document first: Sir Walter Elliot (0-2), Kellynch
    # Hall (5-6), a man who never read (9-13), He (15), each headed by its first word; "the
    # Baronetage of England" (17-20) crosses the cut; England (20) and Walter (22) lie past it.
    (doc,) = read_conll2012(path)
    (everything,), dropped = segment_document(find_mention_heads(doc, parse=first_word_heads),
                                              one_piece_each, max_tokens=20)
    (segment,) = corpus.documents[0].segments
    assert segment.mentions == everything.mentions
    assert [(m.start, m.head, m.head_source) for m in segment.mentions] == [
        (0, 0, "silver-dependencies"), (5, 5, "silver-dependencies"),
        (9, 9, "silver-dependencies"), (15, 15, "silver-dependencies"),
    ]  # fmt: skip
    assert corpus.dropped == dropped == {
        "words after the truncation point": 7,
        "mentions crossing the segment cut": 1,
        "mentions after the truncation point": 2,
    }


# --- the shared gold data ------------------------------------------------------------------


@needs_shared_data()
def test_real_ontogum_and_litbank_files_are_sane() -> None:
    ontogum = SHARED_DATA / "ontogum" / "conllu" / "dev" / "GUM_academic_exposure.conllu"
    litbank = SHARED_DATA / "litbank" / "coref" / "conll" / "105_persuasion_brat.conll.gz"
    for doc, source in [
        (read_corefud(ontogum)[0], "gold-dependencies"),
        (read_conll2012(litbank)[0], "last-word"),
    ]:
        found = find_mention_heads(doc)
        assert len(found.mentions) > 0
        assert all(m.start <= m.head <= m.end for m in found.mentions)  # type: ignore[operator]
        assert {m.head_source for m in found.mentions} == {source}
        assert {m.mention_type for m in found.mentions} <= {"pronoun", "proper", "nominal"}
