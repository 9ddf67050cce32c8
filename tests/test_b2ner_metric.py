"""The upstream B2NER metric (spec section 4): golden values worked out by hand from the spec.

Every expected value below was derived on paper from the eight normalisation steps and the counting rules of
``b2ner-format.md`` section 4, never by running the code. P, R and F1 are written as fractions.
"""

from __future__ import annotations

from fractions import Fraction

import pytest

from b2ner_cli.evaluation.b2ner_metric import (
    EXCLUDED_FROM_AVERAGE,
    Counts,
    SentenceScore,
    answer_from_pairs,
    answer_set,
    language_averages,
    normalize,
    score_sentence,
)

# The published continuations of spec section 2.
EN_CONTINUATION = " year or time period: 1990 s; movie genre: romance; movie actor: kelsy grammer"
ZH_CONTINUATION = " 组织机构名->公司: 暴雪中国; 人名: Moon; 作品名->游戏作品: 星际争霸2; 人名: Infi"


def approx(fraction: Fraction) -> object:
    return pytest.approx(float(fraction), abs=1e-12)


def f1_of(p: Fraction, r: Fraction) -> Fraction:
    return 2 * p * r / (p + r) if p + r else Fraction(0)


# --- step 1: whitespace -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a  b", "a b"),
        ("a \t\n  b", "a b"),  # a mixed run is one run
        ("a\tb", "a b"),  # a run of one non-space whitespace character still becomes one space
        ("a\u3000\u3000b", "a b"),  # ideographic space is whitespace too
        ("   a b \n ", "a b"),  # both ends trimmed (upstream strips answers)
        ("a b c", "a b c"),
    ],
)
def test_step1_whitespace_runs_collapse_to_one_space(text: str, expected: str) -> None:
    assert normalize(text) == expected


# --- step 2: no whitespace around , : ( ) . _ ; ' - ---------------------------------------------------------------

STEP2_CHARS = [",", ":", "(", ")", ".", "_", ";", "'", "-"]


@pytest.mark.parametrize("char", STEP2_CHARS)
def test_step2_whitespace_removed_on_both_sides(char: str) -> None:
    assert normalize(f"x {char} y") == f"x{char}y"
    assert normalize(f"x   {char}\t\ty") == f"x{char}y"  # step 1 makes it "x {c} y" first


@pytest.mark.parametrize("char", STEP2_CHARS)
def test_step2_whitespace_removed_on_one_side(char: str) -> None:
    assert normalize(f"x {char}y") == f"x{char}y"
    assert normalize(f"x{char} y") == f"x{char}y"


@pytest.mark.parametrize("char", ["/", "&", "!", "?", "+", '"', "[", "]", "<", ">", "=", "*", "《", "》"])
def test_step2_leaves_whitespace_around_other_characters(char: str) -> None:
    assert normalize(f"x {char} y") == f"x {char} y"


def test_step2_keeps_spaces_between_words() -> None:
    # "1990 s" has no listed punctuation: its space survives; the spaces after ":" and ";" do not.
    assert normalize("year: 1990 s; genre: romance") == "year:1990 s;genre:romance"


def test_step2_hierarchical_zh_label_arrow() -> None:
    # "-" is listed, ">" is not: "组织机构名 -> 公司" -> "组织机构名-> 公司" (the space after ">" survives).
    assert normalize("组织机构名 -> 公司") == "组织机构名-> 公司"


# --- step 3: lowercase ---------------------------------------------------------------------------------------------


def test_step3_lowercase() -> None:
    assert normalize("Person: John SMITH") == "person:john smith"
    assert normalize("ÉCOLE Normale") == "école normale"


# --- step 4: braces --------------------------------------------------------------------------------------------------


def test_step4_braces_deleted() -> None:
    assert normalize("{a}b{") == "ab"
    assert normalize("person: {John}") == "person:john"
    assert normalize("}}{{") == ""


def test_step4_after_step2_spaces_around_a_comma_inside_braces_survive() -> None:
    # step 2 turns "x { , } y" into "x {,} y" (only the comma's neighbours are whitespace-free), step 4 then
    # deletes the braces, leaving the outer spaces: "x , y".
    assert normalize("x { , } y") == "x , y"


# --- step 5: runs of , . ; -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a,,b", "a,b"),
        ("a,,,,b", "a,b"),
        ("a..b", "a.b"),
        ("a...b", "a.b"),
        ("a;;b", "a;b"),
        ("a;;;b", "a;b"),
        ("a , , b", "a,b"),  # step 2 first: "a,,b", then step 5
        ("a. . .b", "a.b"),
    ],
)
def test_step5_runs_collapse(text: str, expected: str) -> None:
    assert normalize(text) == expected


def test_step5_collapses_runs_of_one_character_not_mixed_ones() -> None:
    # Each of the three characters has its own runs (upstream: one substitution per character): ",." stays.
    assert normalize("a,.;b") == "a,.;b"
    assert normalize("a,,..;;b") == "a,.;b"


def test_step5_after_step4_braces_between_commas() -> None:
    # step 4: "a,{,}b" -> "a,,b"; step 5: "a,b".
    assert normalize("a,{,}b") == "a,b"


# --- step 6: full-width separators and curly quotes ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a；b", "a;b"),
        ("a，b", "a,b"),
        ("“x”", '"x"'),
        ("‘x’", "'x'"),
        ("o’neil", "o'neil"),
    ],
)
def test_step6_full_width_and_curly_quotes_mapped(text: str, expected: str) -> None:
    assert normalize(text) == expected


def test_step6_full_width_colon_mapped_then_step8_applies() -> None:
    # step 6 makes "人名：《红楼梦》" contain ":", so step 8 sees the mention "《红楼梦》" and keeps "红楼梦".
    assert normalize("人名：《红楼梦》") == "人名:红楼梦"
    assert normalize("人名：Moon") == "人名:moon"


def test_step6_comes_after_step2_spaces_around_full_width_separators_survive_one_pass() -> None:
    # step 2 only knows ASCII separators; step 6 maps "：" later, so "a ： b" -> "a : b" (step 8: mention " b"
    # has no @ # or brackets). A second pass (as each piece gets) then removes the spaces.
    assert normalize("a ： b") == "a : b"
    assert normalize("a ， b") == "a , b"
    assert normalize("a ； b") == "a ; b"
    assert normalize("o ’ neil") == "o ' neil"
    assert normalize(normalize("a ： b")) == "a:b"
    assert normalize(normalize("o ’ neil")) == "o'neil"


def test_step6_comes_after_step5_full_width_runs_are_not_collapsed_in_one_pass() -> None:
    # step 5 sees "，，" (full-width, not a run of ","); step 6 then yields ",,". A second pass collapses it.
    assert normalize("a，，b") == "a,,b"
    assert normalize("a；；b") == "a;;b"
    assert normalize(normalize("a，，b")) == "a,b"


# --- step 7: located / organisation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("located", "location"),
        ("dislocated", "dislocation"),  # anywhere, even inside a word
        ("locatedlocated", "locationlocation"),
        ("organisation", "organization"),
        ("organisations", "organizations"),
        ("reorganisation", "reorganization"),
        ("located: the organisation", "location:the organization"),
        ("locate", "locate"),  # not the substring "located"
        ("organization", "organization"),
    ],
)
def test_step7_substring_replacements(text: str, expected: str) -> None:
    assert normalize(text) == expected


def test_step7_after_step3_uppercase_is_replaced_too() -> None:
    # step 3 lowercases "LOCATED" / "Organisation" before step 7 looks for the lowercase substrings.
    assert normalize("LOCATED") == "location"
    assert normalize("Organisation: UN") == "organization:un"


# --- step 8: the mention after the last ':' ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("person: @john", "person:john"),
        ("person: john#", "person:john"),
        ("person: ##@john@@#", "person:john"),
        ("tag: #a#b#", "tag:a#b"),  # only the ends are stripped
        ("@person: john", "@person:john"),  # the label is not the mention
        ("person#: john", "person#:john"),
    ],
)
def test_step8_at_and_hash_stripped_from_mention_ends(text: str, expected: str) -> None:
    assert normalize(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("work: 《Dream》", "work:dream"),
        # step 2 leaves the spaces (no listed punctuation); the first 《…》 content wins.
        ("work: the book 《Dream》 and 《Other》", "work:dream"),
        ("作品名->文字作品: 读《红楼梦》和《西游记》", "作品名->文字作品:红楼梦"),
    ],
)
def test_step8_first_book_title_content_kept(text: str, expected: str) -> None:
    assert normalize(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("x: 《a》", "x:a"),
        ("x: <a>", "x:a"),
        ("x: （a）", "x:a"),
        ("x: (a)", "x:a"),
        ("x: ( a b )", "x:a b"),  # step 2 first: "(a b)", then unwrapped
        ("x: 《<a>》", "x:a"),  # 《…》 content "<a>", then unwrapped from <>
    ],
)
def test_step8_wrapped_mention_unwrapped(text: str, expected: str) -> None:
    assert normalize(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("x: <a", "x:<a"),  # opened only
        ("x: a>", "x:a>"),  # closed only
        ("x: (a) b", "x:(a)b"),  # step 2 removes the space after ")"; "(a)b" does not end with ")"
        ("x: a (b)", "x:a(b)"),  # does not start with "("
    ],
)
def test_step8_mention_not_wrapped_is_kept(text: str, expected: str) -> None:
    assert normalize(text) == expected


@pytest.mark.parametrize("text", ["(a)", "<a>", "（a）", "《a》", "@a#", "x 《a》 y"])
def test_step8_needs_a_colon(text: str) -> None:
    # Without ":" nothing of step 8 applies (only steps 1-7, which change none of these).
    assert normalize(text) == text


def test_step8_uses_the_part_after_the_last_colon() -> None:
    # step 2: "a:(b):(c)"; the mention is "(c)" -> "c"; "(b)" sits before the last colon and stays.
    assert normalize("a: (b): (c)") == "a:(b):c"
    assert normalize("time: 10:30") == "time:10:30"


def test_step8_strip_comes_before_unwrap() -> None:
    # "#《a》#": strip -> "《a》" -> "a". "(@a)": strip does nothing (ends are brackets) -> unwrap -> "@a".
    assert normalize("x: #《a》#") == "x:a"
    assert normalize("x: @(a)#") == "x:a"
    assert normalize("x: (@a)") == "x:@a"


def test_step8_strip_after_step2_can_leave_a_leading_space() -> None:
    # step 2: "x:@ a" (no space around ":" any more, but "@ a" keeps its inner space); strip "@" -> " a".
    assert normalize("x: @ a") == "x: a"
    assert answer_set("x: @ a") == {"x:a"}  # the per-piece pass trims it


def test_step8_full_width_colon_with_spaces_hides_the_at_sign_in_one_pass() -> None:
    # step 6 gives "人名 : @moon"; the part after the last ":" is " @moon", whose first character is a space, so
    # stripping @ and # from its ends changes nothing. The per-piece pass (step 2 then step 8) finishes the job.
    assert normalize("人名 ： @Moon") == "人名 : @moon"
    assert answer_set("人名 ： @Moon") == {"人名:moon"}


def test_step8_full_width_parentheses_with_inner_spaces() -> None:
    # step 2 does not touch "（ a ）"; step 8 unwraps it to " a ". The per-piece pass trims the result.
    assert normalize("x: （ a ）") == "x: a "
    assert answer_set("x: （ a ）") == {"x:a"}


# --- answer_set ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("answer", ["None", " None", "none", "NONE", "", "   ", ";", " ; ; "])
def test_no_entity_answers_give_the_empty_set(answer: str) -> None:
    assert answer_set(answer) == set()


def test_pieces_without_colon_are_dropped() -> None:
    assert answer_set("person: Ann; garbage; ; location: Paris; None") == {"person:ann", "location:paris"}


def test_duplicates_collapse() -> None:
    # All three normalise to "person:ann".
    assert answer_set("person: Ann; Person: ANN; person : ann ;person:Ann") == {"person:ann"}


def test_trailing_and_doubled_separators() -> None:
    assert answer_set("person: Ann;") == {"person:ann"}
    assert answer_set("person: Ann;; location: Paris") == {"person:ann", "location:paris"}


def test_each_piece_is_normalised_again() -> None:
    # First pass (whole answer): step 8 sees only the last mention "《b》" -> "work:《a》;work:b". Second pass on
    # the piece "work:《a》" unwraps it too.
    assert normalize("work: 《A》; work: 《B》") == "work:《a》;work:b"
    assert answer_set("work: 《A》; work: 《B》") == {"work:a", "work:b"}


def test_full_width_answer_is_split_after_mapping_and_each_piece_cleaned() -> None:
    # First pass: step 2 finds no ASCII separator; step 6 -> "人名 : 张三 ; 地名 : 北京". Split on ";" ->
    # "人名 : 张三 " and " 地名 : 北京"; each second pass trims (step 1) and removes spaces around ":" (step 2).
    assert answer_set("人名 ： 张三 ； 地名 ： 北京") == {"人名:张三", "地名:北京"}
    assert answer_set("人名：张三；地名：北京") == {"人名:张三", "地名:北京"}


def test_whole_answer_step8_runs_before_the_split() -> None:
    # First pass: step 2 -> "person:(a;b)"; step 8 on the last mention "(a;b)" unwraps it -> "person:a;b".
    # Split -> "person:a" and "b"; "b" has no ":" and is dropped.
    assert answer_set("person: (a; b)") == {"person:a"}


def test_mentions_may_hold_commas_and_colons() -> None:
    assert answer_set("location: Paris , France") == {"location:paris,france"}
    assert answer_set("time: 10 : 30; person: Ann") == {"time:10:30", "person:ann"}


def test_spec_en_continuation_set() -> None:
    assert answer_set(EN_CONTINUATION) == {
        "year or time period:1990 s",
        "movie genre:romance",
        "movie actor:kelsy grammer",
    }


def test_spec_zh_continuation_set() -> None:
    # "Moon" and "Infi" are lowercased; the two 人名 pieces differ in mention, so four elements.
    assert answer_set(ZH_CONTINUATION) == {
        "组织机构名->公司:暴雪中国",
        "人名:moon",
        "作品名->游戏作品:星际争霸2",
        "人名:infi",
    }


# --- Counts -----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tp", "fp", "fn", "p", "r"),
    [
        (0, 0, 0, Fraction(0), Fraction(0)),  # both denominators 0
        (0, 3, 0, Fraction(0), Fraction(0)),  # recall denominator 0
        (0, 0, 3, Fraction(0), Fraction(0)),  # precision denominator 0
        (0, 2, 2, Fraction(0), Fraction(0)),  # P+R = 0 -> F1 0
        (2, 0, 0, Fraction(1), Fraction(1)),
        (3, 0, 1, Fraction(1), Fraction(3, 4)),
        (3, 0, 0, Fraction(1), Fraction(1)),
        (1, 3, 0, Fraction(1, 4), Fraction(1)),
        (2, 2, 3, Fraction(1, 2), Fraction(2, 5)),
    ],
)
def test_counts_precision_recall_f1(tp: int, fp: int, fn: int, p: Fraction, r: Fraction) -> None:
    counts = Counts(tp, fp, fn)
    assert counts.precision == approx(p)
    assert counts.recall == approx(r)
    assert counts.f1 == approx(f1_of(p, r))


def test_counts_f1_spot_values() -> None:
    # 2*(1)(3/4)/(7/4) = 6/7; 2*(1/4)(1)/(5/4) = 2/5; 2*(1/2)(2/5)/(9/10) = 4/9.
    assert Counts(3, 0, 1).f1 == approx(Fraction(6, 7))
    assert Counts(1, 3, 0).f1 == approx(Fraction(2, 5))
    assert Counts(2, 2, 3).f1 == approx(Fraction(4, 9))


def test_counts_default_is_zero() -> None:
    assert Counts() == Counts(0, 0, 0)


def test_counts_add_sums_in_place() -> None:
    counts = Counts(1, 2, 3)
    assert counts.add(Counts(4, 5, 6)) is None
    assert counts == Counts(5, 7, 9)


def test_counts_to_dict() -> None:
    # P = 1/2, R = 1/3, F1 = 2*(1/6)/(5/6) = 2/5.
    d = Counts(1, 1, 2).to_dict()
    assert set(d) == {"precision", "recall", "f1", "tp", "fp", "fn"}
    assert (d["tp"], d["fp"], d["fn"]) == (1, 1, 2)
    assert d["precision"] == approx(Fraction(1, 2))
    assert d["recall"] == approx(Fraction(1, 3))
    assert d["f1"] == approx(Fraction(2, 5))


# --- score_sentence ------------------------------------------------------------------------------------------------


def test_score_sentence_sets_and_counts() -> None:
    score = score_sentence("person: John Smith; location: Paris", "Person: john  smith; organization: Paris")
    assert isinstance(score, SentenceScore)
    assert score.true_positives == frozenset({"person:john smith"})
    assert score.false_positives == frozenset({"organization:paris"})
    assert score.false_negatives == frozenset({"location:paris"})
    assert isinstance(score.true_positives, frozenset)
    assert isinstance(score.false_positives, frozenset)
    assert isinstance(score.false_negatives, frozenset)
    assert score.counts == Counts(1, 1, 1)


def test_label_outside_the_label_set_is_an_ordinary_false_positive() -> None:
    # The label set of the prompt plays no part: "weapon" is scored like any other wrong pair.
    score = score_sentence("person: Ann", "person: Ann; weapon: sword")
    assert score.counts == Counts(1, 1, 0)
    assert score.false_positives == frozenset({"weapon:sword"})


def test_duplicate_predictions_count_once() -> None:
    # Set semantics: three copies of the gold pair are one TP, two copies of a wrong pair one FP.
    score = score_sentence("person: Ann", "person: Ann; person: Ann; person: ANN; location: X; location: x")
    assert score.counts == Counts(1, 1, 0)


def test_normalisation_makes_variants_match() -> None:
    gold = "organisation: 《ACME》; located: Rome"
    predicted = "Organization : ACME ; LOCATION：  @Rome#"
    # gold -> {"organization:acme", "location:rome"}; prediction -> same two (full-width colon, @ # stripped).
    assert score_sentence(gold, predicted).counts == Counts(2, 0, 0)


def test_none_gold_none_prediction_scores_nothing() -> None:
    score = score_sentence("None", "None")
    assert score.counts == Counts(0, 0, 0)
    assert score.counts.f1 == 0.0  # upstream gives 0, not 1, when nothing is there


def test_none_gold_with_prediction_is_all_false_positives() -> None:
    assert score_sentence("None", "location: Berlin; person: Ann").counts == Counts(0, 2, 0)


def test_empty_prediction_is_all_false_negatives_and_scores_zero() -> None:
    for empty in ("", "None", " None"):
        counts = score_sentence("person: Ann; location: Paris", empty).counts
        assert counts == Counts(0, 0, 2)
        assert (counts.precision, counts.recall, counts.f1) == (0.0, 0.0, 0.0)


def test_perfect_prediction_scores_one() -> None:
    counts = score_sentence("person: Ann; location: Paris", "location: Paris; person: Ann").counts
    assert counts == Counts(2, 0, 0)
    assert (counts.precision, counts.recall, counts.f1) == (1.0, 1.0, 1.0)


def test_micro_sum_over_sentences() -> None:
    pairs = [
        # gold {person:john smith, location:paris}, pred {person:john smith, organization:paris}: 1 / 1 / 1
        ("person: John Smith; location: Paris", "person: john smith; organization: Paris"),
        # gold empty, pred {location:berlin}: 0 / 1 / 0
        ("None", "location: Berlin"),
        # gold {organization:acme, person:ann}, pred empty: 0 / 0 / 2
        ("organisation: ACME; person: Ann", ""),
        # gold {location:rome}, pred {location:rome} (twice, one after normalisation): 1 / 0 / 0
        ("location: Rome", "location : Rome ; location: Rome"),
    ]
    per_sentence = [score_sentence(gold, predicted).counts for gold, predicted in pairs]
    assert per_sentence == [Counts(1, 1, 1), Counts(0, 1, 0), Counts(0, 0, 2), Counts(1, 0, 0)]
    total = Counts()
    for counts in per_sentence:
        total.add(counts)
    assert total == Counts(2, 2, 3)
    # P = 2/4 = 1/2, R = 2/5, F1 = 2*(1/2)(2/5)/(1/2+2/5) = (2/5)/(9/10) = 4/9 (macro over sentences would be
    # (1/2 + 0 + 0 + 1)/4 = 3/8, so this pins micro averaging).
    assert total.precision == approx(Fraction(1, 2))
    assert total.recall == approx(Fraction(2, 5))
    assert total.f1 == approx(Fraction(4, 9))


# --- the spec's published continuations -----------------------------------------------------------------------------


@pytest.mark.parametrize(("answer", "size"), [(EN_CONTINUATION, 3), (ZH_CONTINUATION, 4)])
def test_published_continuations_against_themselves(answer: str, size: int) -> None:
    score = score_sentence(answer, answer)
    assert score.counts == Counts(size, 0, 0)
    assert score.counts.f1 == 1.0
    # The stripped version (what answer extraction hands over) scores the same.
    assert score_sentence(answer, answer.strip()).counts == Counts(size, 0, 0)


def test_published_en_continuation_against_a_perturbed_prediction() -> None:
    predicted = " year or time period: 1990s; movie genre: Romance; movie actor: kelsy  grammer; movie title: grammer"
    score = score_sentence(EN_CONTINUATION, predicted)
    # "1990s" != "1990 s" (no rule touches a plain space): one FP and one FN. "Romance" lowercases to a match;
    # "kelsy  grammer" collapses to a match; "movie title: grammer" is a FP.
    assert score.true_positives == frozenset({"movie genre:romance", "movie actor:kelsy grammer"})
    assert score.false_positives == frozenset({"year or time period:1990s", "movie title:grammer"})
    assert score.false_negatives == frozenset({"year or time period:1990 s"})
    counts = score.counts
    assert counts == Counts(2, 2, 1)
    # P = 2/4 = 1/2, R = 2/3, F1 = 2*(1/2)(2/3)/(1/2+2/3) = (2/3)/(7/6) = 4/7.
    assert counts.precision == approx(Fraction(1, 2))
    assert counts.recall == approx(Fraction(2, 3))
    assert counts.f1 == approx(Fraction(4, 7))


def test_published_zh_continuation_against_a_perturbed_prediction() -> None:
    predicted = " 组织机构名->公司：暴雪中国；人名: MOON; 人名: Moon; 作品名->游戏作品: 《星际争霸2》; 地名: Infi"
    score = score_sentence(ZH_CONTINUATION, predicted)
    # Full-width "：" "；" map to ASCII; "MOON"/"Moon" both become "人名:moon" (one element); 《星际争霸2》 is
    # unwrapped in the per-piece pass; "地名:infi" is a FP and the gold "人名:infi" a FN.
    assert score.true_positives == frozenset({"组织机构名->公司:暴雪中国", "人名:moon", "作品名->游戏作品:星际争霸2"})
    assert score.false_positives == frozenset({"地名:infi"})
    assert score.false_negatives == frozenset({"人名:infi"})
    counts = score.counts
    assert counts == Counts(3, 1, 1)
    # P = 3/4, R = 3/4, F1 = 3/4.
    assert counts.precision == approx(Fraction(3, 4))
    assert counts.recall == approx(Fraction(3, 4))
    assert counts.f1 == approx(Fraction(3, 4))


def test_published_continuations_micro_over_both() -> None:
    total = Counts()
    total.add(score_sentence(EN_CONTINUATION, " movie genre: romance; movie title: 1990 s").counts)  # 1 / 1 / 2
    total.add(score_sentence(ZH_CONTINUATION, " 人名: Moon; 人名: Infi").counts)  # 2 / 0 / 2
    assert total == Counts(3, 1, 4)
    # P = 3/4, R = 3/7, F1 = 2*(3/4)(3/7)/(3/4+3/7) = (9/14)/(33/28) = 6/11.
    assert total.precision == approx(Fraction(3, 4))
    assert total.recall == approx(Fraction(3, 7))
    assert total.f1 == approx(Fraction(6, 11))


# --- language averages --------------------------------------------------------------------------------------------


def test_excluded_names() -> None:
    assert frozenset({"math-junior", "CAIL2022"}) == EXCLUDED_FROM_AVERAGE


def test_language_averages_unweighted_with_exclusions() -> None:
    f1 = {
        "CrossNER_AI": ("en", 0.6),
        "CrossNER_literature": ("en", 0.7),
        "CrossNER_music": ("en", 0.8),
        "CrossNER_politics": ("en", 0.8),
        "CrossNER_science": ("en", 0.7),
        "mit-movie": ("en", 0.6),
        "mit-restaurant": ("en", 0.5),
        "CAIL2021": ("zh", 0.5),  # a neighbour of CAIL2022, kept
        "CCKS2021address": ("zh", 0.4),
        "CLUENER": ("zh", 0.8),
        "CBLUE": ("zh", 0.6),
        "math-high": ("zh", 0.7),  # a neighbour of math-junior, kept
        "weibo": ("zh", 0.6),
        "zh-ontonotes": ("zh", 0.6),
        "math-junior": ("zh", 0.0),  # excluded
        "CAIL2022": ("zh", 0.0),  # excluded
    }
    averages = language_averages([(name, language, score) for name, (language, score) in f1.items()])
    assert set(averages) == {"en", "zh"}
    # en: (6+7+8+8+7+6+5)/10 / 7 = 4.7/7 = 47/70.
    assert averages["en"] == approx(Fraction(47, 70))
    # zh: (5+4+8+6+7+6+6)/10 / 7 = 4.2/7 = 3/5 (with the two excluded zeros it would be 4.2/9 = 7/15).
    assert averages["zh"] == approx(Fraction(3, 5))


def test_language_averages_on_percent_values() -> None:
    averages = language_averages([("a", "ml", 40.0), ("b", "ml", 46.6), ("CAIL2022", "ml", 100.0)])
    assert averages == {"ml": approx(Fraction(433, 10))}  # (40 + 46.6) / 2 = 43.3


def test_language_with_only_excluded_datasets_averages_to_zero() -> None:
    # upstream's calculate_f1 writes f1_avg = 0 for a (task, language) group whose datasets are all excluded
    rows = [("math-junior", "zh", 0.9), ("CAIL2022", "zh", 0.1), ("weibo", "en", 0.5)]
    assert language_averages(rows) == {"en": 0.5, "zh": 0.0}


def test_language_averages_empty() -> None:
    assert language_averages({}) == {}


# --- answer_from_pairs --------------------------------------------------------------------------------------------


def test_answer_from_pairs_grammar() -> None:
    assert answer_from_pairs([("person", "Ann"), ("location", "Paris")]) == "person: Ann; location: Paris"
    assert answer_from_pairs([("人名", "李明")]) == "人名: 李明"


def test_answer_from_no_pairs_is_none() -> None:
    assert answer_from_pairs([]) == "None"
    assert answer_set(answer_from_pairs([])) == set()


def test_answer_from_pairs_scores_against_the_spec_continuation() -> None:
    pairs = [("year or time period", "1990 s"), ("movie genre", "romance"), ("movie actor", "kelsy grammer")]
    assert score_sentence(EN_CONTINUATION, answer_from_pairs(pairs)).counts == Counts(3, 0, 0)


# Upstream's scorer strips any run of 《》<>（）() at both ends of the mention, matched or not, and its book-title
# rule needs some content between 《 and 》. Worked out from those two patterns:
# ^[《》<>（）()]+(.+?)[《》<>（）()]+$ keeps the shortest non-empty middle; 《(.+?)》 takes the first titled part.
@pytest.mark.parametrize(
    ("piece", "expected"),
    [
        ("x: ((a))", "x:a"),
        ("x: <<a>>", "x:a"),
        ("x: <(a)>", "x:a"),
        ("x: (a>", "x:a"),
        ("x: 《a)", "x:a"),  # no 《…》 pair with content, but the bracket runs at both ends go
        ("x: ()", "x:()"),  # no content between the brackets: nothing to unwrap
        ("x: 《》", "x:《》"),
        ("x: 《》《a》", "x:》《a"),  # 《(.+?)》 first matches "》《a" (the 《 at 0 with content up to the last 》)
    ],
)
def test_bracket_rules_follow_upstreams_patterns(piece: str, expected: str) -> None:
    assert normalize(piece) == expected
