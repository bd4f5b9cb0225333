"""Coreference baselines on a hand-built segment whose every answer is worked out below."""

from __future__ import annotations

import pytest

from app.analysis.coref_baselines import (
    BASELINES,
    Features,
    candidate_antecedents,
    evaluable,
    features,
    head_match,
    nearest_mention,
    score,
    sieve,
)
from app.types import Mention, Segment, Word

# word  index  XPOS      word  index  XPOS      word  index  XPOS
TAGGED = """
Lady 0 NNP  Russell 1 NNP  met 2 VBD  Sir 3 NNP  Walter 4 NNP  Elliot 5 NNP  . 6 .
The 7 DT  old 8 JJ  king 9 NN  greeted 10 VBD  Sir 11 NNP  Walter 12 NNP  and 13 CC
his 14 PRP$  daughters 15 NNS  . 16 .
She 17 PRP  saw 18 VBD  the 19 DT  old 20 JJ  king 21 NN  . 22 .
An 23 DT  old 24 JJ  king 25 NN  who 26 WP  rules 27 VBZ  met 28 VBD  the 29 DT  king 30 NN
and 31 CC  Walter 32 NNP  . 33 .
The 34 DT  monarch 35 NN  slept 36 VBD  . 37 .
Her 38 PRP$  smile 39 NN  faded 40 VBD  . 41 .
"""
_items = TAGGED.split()
WORDS = [
    Word(form, xpos=xpos) for form, _index, xpos in zip(_items[::3], _items[1::3], _items[2::3])
]
assert [int(index) for index in _items[1::3]] == list(range(len(WORDS)))

# Entities: R = Lady Russell, W = Sir Walter Elliot, K = the king, D = the daughters.
MENTIONS = [
    Mention(0, 1, "R", head=1, mention_type="proper"),  # 0 A  Lady Russell
    Mention(3, 5, "W", head=5, mention_type="proper"),  # 1 B  Sir Walter Elliot
    Mention(7, 9, "K", head=9, mention_type="nominal"),  # 2 C  The old king
    Mention(11, 12, "W", head=12, mention_type="proper"),  # 3 E  Sir Walter
    Mention(14, 14, "W", head=14, mention_type="pronoun"),  # 4 F  his
    Mention(14, 15, "D", head=15, mention_type="nominal"),  # 5 G  his daughters
    Mention(17, 17, "R", head=17, mention_type="pronoun"),  # 6 H  She
    Mention(19, 21, "K", head=21, mention_type="nominal"),  # 7 I  the old king
    Mention(23, 27, "K", head=25, mention_type="nominal"),  # 8 J  An old king who rules
    Mention(29, 30, "K", head=30, mention_type="nominal"),  # 9 L  the king
    Mention(32, 32, "W", head=32, mention_type="proper"),  # 10 M  Walter
    Mention(34, 35, "K", head=35, mention_type="nominal"),  # 11 N  The monarch
    Mention(38, 38, "R", head=38, mention_type="pronoun"),  # 12 O  Her
]
A, B, C, E, F, G, H, I, J, L, M, N, O = range(13)  # noqa: E741 (the letters of the table)

# Worked by hand. "Closest" = the candidate ending latest before the mention starts.
#   mention  nearest   head_match                    sieve (pass)
#   E        C  wrong  no "walter" head -> C  wrong  B  proper_head_match: {walter} in B
#   F        E  right  no "his" head -> E     right  E  pronoun_agreement: no earlier pronoun;
#                                                       Sir -> male, NNP -> sg
#   H        G  wrong  no "she" head -> G     wrong  A  pronoun_agreement: "his" is male;
#                                                       G plural (NNS), E/B male (Sir),
#                                                       C male (king), A female (Lady)
#   I        H  wrong  C (king)               right  C  exact_match "the old king"
#   J        I  right  I (king)               right  I  relaxed_match "old king"
#   L        J  right  J (king)               right  J  strict_head_match (no modifiers)
#   M        L  wrong  E (walter)             right  E  strict_head_match
#   N        M  wrong  no "monarch" -> M      wrong  M  nearest (no pass proposes)
#   O        N  wrong  no "her" head -> N     wrong  H  pronoun_match: "She" has the same
#                                                       features as "Her" (sg, female, 3rd)
EXPECTED = {
    E: (C, C, (B, "proper_head_match")),
    F: (E, E, (E, "pronoun_agreement")),
    H: (G, G, (A, "pronoun_agreement")),
    I: (H, C, (C, "exact_match")),
    J: (I, I, (I, "relaxed_match")),
    L: (J, J, (J, "strict_head_match")),
    M: (L, E, (E, "strict_head_match")),
    N: (M, M, (M, "nearest")),
    O: (N, N, (H, "pronoun_match")),
}


def test_candidates_precede_and_evaluable_mentions_have_an_antecedent() -> None:
    # "his daughters" starts on "his" (14), so "his" does not precede it.
    assert candidate_antecedents(MENTIONS, G) == [A, B, C, E]
    assert candidate_antecedents(MENTIONS, A) == []
    # B, C, G have no earlier mention of their entity; A has no candidate at all.
    assert evaluable(MENTIONS) == [E, F, H, I, J, L, M, N, O]


@pytest.mark.parametrize("i", list(EXPECTED))
def test_each_baseline_choice_worked_by_hand(i: int) -> None:
    nearest, head, sieved = EXPECTED[i]
    assert nearest_mention(WORDS, MENTIONS, i) == nearest
    assert head_match(WORDS, MENTIONS, i) == head
    assert sieve(WORDS, MENTIONS, i) == sieved


def test_choices_do_not_depend_on_the_order_of_the_mention_list() -> None:
    order = [7, 2, 11, 0, 12, 5, 9, 3, 1, 10, 4, 8, 6]  # shuffled[k] = MENTIONS[order[k]]
    shuffled = [MENTIONS[k] for k in order]
    for i, (nearest, head, (sieved, name)) in EXPECTED.items():
        k = order.index(i)
        assert order[nearest_mention(WORDS, shuffled, k)] == nearest
        assert order[head_match(WORDS, shuffled, k)] == head
        chosen, fired = sieve(WORDS, shuffled, k)
        assert (order[chosen], fired) == (sieved, name)
    assert [order[k] for k in candidate_antecedents(shuffled, order.index(G))] == [A, B, C, E]


def test_score_per_baseline_and_mention_type() -> None:
    # E, M proper; F, H, O pronoun; I, J, L, N nominal (see the table above).
    assert score(BASELINES, [Segment("toy", WORDS, MENTIONS)]) == {
        ("head_match", "all"): (5, 9),
        ("head_match", "nominal"): (3, 4),  # I J L right, N wrong
        ("head_match", "pronoun"): (1, 3),  # F right, H O wrong
        ("head_match", "proper"): (1, 2),  # M right, E wrong
        ("nearest", "all"): (3, 9),
        ("nearest", "nominal"): (2, 4),  # J L right
        ("nearest", "pronoun"): (1, 3),  # F right
        ("nearest", "proper"): (0, 2),
        ("sieve", "all"): (8, 9),
        ("sieve", "nominal"): (3, 4),  # N wrong
        ("sieve", "pronoun"): (3, 3),
        ("sieve", "proper"): (2, 2),
    }


def test_a_mention_without_candidates_is_refused_and_not_scored() -> None:
    with pytest.raises(ValueError, match="no candidate antecedent"):
        nearest_mention(WORDS, MENTIONS, A)
    assert score(BASELINES, [Segment("one", WORDS, MENTIONS[:1])]) == {}


def test_features_guesses() -> None:
    assert features(WORDS, MENTIONS[H]) == Features("sg", "female", 3, "animate")
    assert features(WORDS, MENTIONS[A]) == Features("sg", "female", None, "animate")  # Lady
    assert features(WORDS, MENTIONS[G]) == Features("pl", None, None, None)  # NNS
    assert features(WORDS, MENTIONS[C]) == Features("sg", "male", None, "animate")  # king
    # No POS: plural by spelling; "and" before any relativizer -> coordination.
    bare = [Word(f) for f in "cats glass Tom and Ann a dog that ran and hid".split()]
    assert features(bare, Mention(0, 0, "x", head=0)).number == "pl"
    assert features(bare, Mention(1, 1, "x", head=1)).number is None
    assert features(bare, Mention(2, 4, "x", head=2)).number == "pl"
    assert features(bare, Mention(5, 10, "x", head=6)).number is None
    assert Features("sg", None, 3, None).agrees(Features(None, "male", None, "animate"))
    assert not Features("sg").agrees(Features("pl"))
