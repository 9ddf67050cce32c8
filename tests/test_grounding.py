"""Grounding mentions in the text: every offset below was counted by hand (end exclusive)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from spec import SPEC_ZH_LABELS as ZH

from b2ner_cli.answers import parse_answer
from b2ner_cli.grounding import Entity, Unmatched, flatten, ground, locate, shift

EN = ("person", "organization", "location")


def spans(entities: Sequence[Entity]) -> list[tuple[int, int, str, str]]:
    return [(e.start, e.end, e.text, e.label) for e in entities]


def check_consistent(text: str, entities: Sequence[Entity]) -> None:
    for e in entities:
        assert text[e.start : e.end] == e.text


# --- locate -------------------------------------------------------------------------------------------------


def test_locate_exact_single() -> None:
    # "I"0 " "1 "love"2-5 " "6 "Paris"7-11 "."12
    assert locate("I love Paris.", "Paris") == [(7, 12)]


def test_locate_every_occurrence() -> None:
    # "Paris"0-4 " is big and "5-16 "Paris"17-21
    assert locate("Paris is big and Paris is old .", "Paris") == [(0, 5), (17, 22)]


def test_locate_absent_mention() -> None:
    assert locate("I love Paris.", "Napoleon") == []
    assert locate("I love Paris.", "Paris Hilton") == []  # no partial match invented


def test_locate_tolerant_space_removed() -> None:
    # mention "1990 s", text has "1990s": "a"0 " "1 "good"2-5 " "6 "1990s"7-11
    assert locate("a good 1990s romance", "1990 s") == [(7, 12)]


def test_locate_tolerant_space_added() -> None:
    # mention "1990s", text has "1990 s": "good"0-3 " "4 "1990"5-8 " "9 "s"10
    assert locate("good 1990 s movie", "1990s") == [(5, 11)]


def test_locate_tolerant_case() -> None:
    # "I"0 " "1 "love"2-5 " "6 "New"7-9 " "10 "York"11-14 "."15
    assert locate("I love New York.", "new york") == [(7, 15)]


def test_locate_tolerant_newline_and_multiple_spaces() -> None:
    # "Flights"0-6 " "7 "to"8-9 " "10 "New"11-13 "\n"14 "York"15-18
    assert locate("Flights to New\nYork today", "new  york") == [(11, 19)]


def test_locate_tolerant_apostrophe_spacing() -> None:
    # clean-up spaces: the model may say "Obama 's" for "Obama's" (0-6)
    assert locate("Obama's speech", "Obama 's") == [(0, 7)]


def test_locate_tolerant_non_ascii_case() -> None:
    # "Visit"0-4 " "5 "the"6-8 " "9 "école"10-14
    assert locate("Visit the école", "ÉCOLE") == [(10, 15)]


def test_locate_regex_special_characters() -> None:
    # "I"0 " "1 "like"2-5 " "6 "C++"7-9 " "10 "and"11-13 " "14 "C"15 "."16
    assert locate("I like C++ and C.", "C++") == [(7, 10)]
    assert locate("I like C++ and C.", "c ++") == [(7, 10)]
    # "the"0-2 " "3 "U.S."4-7 " "8 "army"9-12
    assert locate("the U.S. army", "U.S.") == [(4, 8)]


def test_locate_whole_word_preferred_over_inside_word() -> None:
    # "Jobson"0-5 " "6 "met"7-9 " "10 "Steve"11-15 " "16 "Jobs"17-20 "."21; the "Jobs" in "Jobson" (0-4) is skipped
    assert locate("Jobson met Steve Jobs.", "Jobs") == [(17, 21)]


def test_locate_digits_are_word_characters() -> None:
    # "the"0-2 " "3 "1990s"4-8 " "9 "and"10-12 " "13 "1990"14-17: only the whole "1990"
    assert locate("the 1990s and 1990", "1990") == [(14, 18)]


def test_locate_punctuation_is_a_word_boundary() -> None:
    assert locate("Obama's speech", "Obama") == [(0, 5)]
    # "New York-based": "New York" 0-7, then "-"
    assert locate("New York-based firm", "New York") == [(0, 8)]


def test_locate_inside_word_when_nothing_better() -> None:
    # tier 3: only occurrence is inside "Jobson" (0-4)
    assert locate("Jobson met Steve.", "Jobs") == [(0, 4)]


def test_locate_exact_whole_word_beats_tolerant_whole_word() -> None:
    # "apple"0-4 " "5 "and"6-8 " "9 "Apple"10-14: the exact "Apple" wins, the case variant is a lower tier
    assert locate("apple and Apple", "Apple") == [(10, 15)]


def test_locate_tolerant_whole_word_beats_exact_inside_word() -> None:
    # "Applesauce"0-9 " "10 "and"11-13 " "14 "apple"15-19 " "20 "pie": exact "Apple" only inside "Applesauce" (0-5),
    # tolerant whole word "apple" at 15-20 wins
    assert locate("Applesauce and apple pie", "Apple") == [(15, 20)]


def test_locate_exact_inside_word_beats_tolerant_inside_word() -> None:
    # "xAppley"0-6 " "7 "xapplez"8-14: exact inside word at 1-6; tolerant inside word at 9-14 is a lower tier
    assert locate("xAppley xapplez", "Apple") == [(1, 6)]


def test_locate_tolerant_inside_word_last_resort() -> None:
    # "NewYorkers": "NewYork" 0-7 followed by "e"
    assert locate("NewYorkers", "new york") == [(0, 7)]


def test_locate_cjk_has_no_word_boundaries() -> None:
    # 李0 明1 昨2 天3 去4 了5 北6 京7 大8 学9 。10
    assert locate("李明昨天去了北京大学。", "北京") == [(6, 8)]
    # 北0 京1 大2 学3 " "4 北5 " "6 京7: the exact 北京 at 0-2 counts as whole-word (CJK), so the
    # tolerant "北 京" at 5-8 is a lower tier
    assert locate("北京大学 北 京", "北京") == [(0, 2)]


def test_locate_latin_mention_next_to_han_is_whole_word() -> None:
    # M0 o1 o2 n3 s4 h5 i6 n7 e8 与9 M10 o11 o12 n13: "Moon" inside "Moonshine" is skipped, the one after 与 is whole
    assert locate("Moonshine与Moon", "Moon") == [(10, 14)]


def test_locate_cjk_tolerant_spaces() -> None:
    # 去0 了1 北2 " "3 京4
    assert locate("去了北 京", "北京") == [(2, 5)]


def test_locate_empty_or_blank_mention_finds_nothing() -> None:
    assert locate("a b c", "") == []
    assert locate("a b c", " ") == []
    assert locate("a b c", "\n\t") == []


def test_locate_padded_mention_matches_without_the_padding() -> None:
    # "in"0-1 " "2 "Paris"3-7 " "8 "."9
    assert locate("in Paris .", " Paris ") == [(3, 8)]


# --- ground -------------------------------------------------------------------------------------------------

SPEC_EN_TEXT = "what is a good 1990 s romance movie starring kelsy grammer"
MOVIE = ("movie genre", "year or time period", "movie title", "movie actor", "movie age rating")


def test_ground_spec_example_en() -> None:
    # what0-3 is5-6 a8 good10-13 "1990 s"15-20 romance22-28 movie30-34 starring36-43 kelsy45-49 grammer51-57
    parsed = parse_answer(" year or time period: 1990 s; movie genre: romance; movie actor: kelsy grammer", MOVIE)
    entities, unmatched = ground(SPEC_EN_TEXT, parsed.pairs, MOVIE)
    assert spans(entities) == [
        (15, 21, "1990 s", "year or time period"),
        (22, 29, "romance", "movie genre"),
        (45, 58, "kelsy grammer", "movie actor"),
    ]
    assert unmatched == []
    check_consistent(SPEC_EN_TEXT, entities)


SPEC_ZH_TEXT = (
    "暴雪中国时隔多年之后再次举办了官方比赛，而Moon在星际争霸2中发挥不是很理想，对此Infi感觉Moon是哪里出了问题呢？"
)


def test_ground_spec_example_zh() -> None:
    # 暴0雪1中2国3 时4..赛18 ，19 而20 M21o22o23n24 在25 星26际27争28霸29 2 30 中31 ... ，39 对40 此41
    # I42n43f44i45 感46 觉47 M48o49o50n51 是52 ... ？60 — "Moon" is said once but occurs twice.
    assert len(SPEC_ZH_TEXT) == 61
    parsed = parse_answer(" 组织机构名->公司: 暴雪中国; 人名: Moon; 作品名->游戏作品: 星际争霸2; 人名: Infi", ZH)
    entities, unmatched = ground(SPEC_ZH_TEXT, parsed.pairs, ZH)
    assert spans(entities) == [
        (0, 4, "暴雪中国", "组织机构名->公司"),
        (21, 25, "Moon", "人名"),
        (26, 31, "星际争霸2", "作品名->游戏作品"),
        (42, 46, "Infi", "人名"),
        (48, 52, "Moon", "人名"),
    ]
    assert unmatched == []
    check_consistent(SPEC_ZH_TEXT, entities)


def test_ground_repeated_mention_tagged_everywhere_and_absent_one_unmatched() -> None:
    text = "Paris is big and Paris is old ."
    parsed = parse_answer(" location: Paris; person: Napoleon", EN)
    entities, unmatched = ground(text, parsed.pairs, EN)
    assert spans(entities) == [(0, 5, "Paris", "location"), (17, 22, "Paris", "location")]
    assert unmatched == [Unmatched("Napoleon", "person")]
    check_consistent(text, entities)


def test_ground_unknown_label_dropped_by_parse_answer() -> None:
    # "Ada"0-2 " "3 "met"4-6 " "7 "Bob"8-10 " "11 "."12; "city" was not asked: no entity for it
    text = "Ada met Bob ."
    parsed = parse_answer(" person: Ada; city: Bob; person: Bob", EN)
    entities, unmatched = ground(text, parsed.pairs, EN)
    assert spans(entities) == [(0, 3, "Ada", "person"), (8, 11, "Bob", "person")]
    assert unmatched == []
    assert parsed.unknown_labels == [("city", "Bob")]


def test_ground_none_answer_gives_nothing() -> None:
    parsed = parse_answer(" None", EN)
    assert ground("It rained all day .", parsed.pairs, EN) == ([], [])


def test_ground_entity_text_is_the_texts_spelling() -> None:
    # "I"0 "love"2-5 "New York"7-14 "and"16-18 "the"20-22 "1990s"24-28
    text = "I love New York and the 1990s"
    entities, unmatched = ground(text, [("location", "new york"), ("date", "1990 s")], ("location", "date"))
    assert spans(entities) == [(7, 15, "New York", "location"), (24, 29, "1990s", "date")]
    assert unmatched == []
    check_consistent(text, entities)


def test_ground_same_span_two_labels_kept_twice_in_label_order() -> None:
    # "Washington"0-9 " "10 "visited"11-17 " "18 "Washington"19-28; label order puts location before person
    text = "Washington visited Washington"
    pairs = [("person", "Washington"), ("location", "Washington")]
    entities, _ = ground(text, pairs, ("location", "person"))
    assert spans(entities) == [
        (0, 10, "Washington", "location"),
        (0, 10, "Washington", "person"),
        (19, 29, "Washington", "location"),
        (19, 29, "Washington", "person"),
    ]
    entities, _ = ground(text, pairs, ("person", "location"))
    assert [e.label for e in entities] == ["person", "location", "person", "location"]


def test_ground_duplicates_collapse() -> None:
    # The same mention said twice, or two spellings of one span, give one entity per span and label.
    text = "Paris is big and Paris is old ."
    pairs = [("location", "Paris"), ("location", "Paris"), ("location", "paris"), ("person", "Napoleon")] * 2
    entities, unmatched = ground(text, pairs, EN)
    assert spans(entities) == [(0, 5, "Paris", "location"), (17, 22, "Paris", "location")]
    assert unmatched == [Unmatched("Napoleon", "person")]


def test_ground_unmatched_in_answer_order() -> None:
    entities, unmatched = ground("Ada met Bob .", [("person", "Zed"), ("location", "Rome"), ("person", "Ada")], EN)
    assert spans(entities) == [(0, 3, "Ada", "person")]
    assert unmatched == [Unmatched("Zed", "person"), Unmatched("Rome", "location")]


def test_ground_sorted_by_start_then_end() -> None:
    # "New"0-2 " "3 "York"4-7 " "8 "City"9-12 " is big"; nested spans both kept (not flat), shorter end first
    text = "New York City is big"
    entities, _ = ground(text, [("location", "New York City"), ("location", "New York")], EN)
    assert spans(entities) == [(0, 8, "New York", "location"), (0, 13, "New York City", "location")]


def test_ground_cjk_mention_inside_longer_word() -> None:
    # 我0 在1 北2 京3 大4 学5 读6 书7
    entities, _ = ground("我在北京大学读书", [("地名", "北京"), ("组织机构名->其它", "北京大学")], ZH)
    assert spans(entities) == [(2, 4, "北京", "地名"), (2, 6, "北京大学", "组织机构名->其它")]


def test_ground_partial_mention_is_not_invented() -> None:
    entities, unmatched = ground("Steve met Ada.", [("person", "Steve Jobs")], EN)
    assert entities == []
    assert unmatched == [Unmatched("Steve Jobs", "person")]


# --- flatten ------------------------------------------------------------------------------------------------

ALPHA = "abcdefghijklmnopqrstuvwxyz"


def ent(start: int, end: int, label: str = "x") -> Entity:
    return Entity(start, end, ALPHA[start:end], label)


def test_flatten_longer_span_wins() -> None:
    assert flatten([ent(0, 8), ent(0, 13)]) == [ent(0, 13)]
    assert flatten([ent(0, 13), ent(0, 8)]) == [ent(0, 13)]


def test_flatten_longer_middle_span_removes_both_neighbours() -> None:
    # lengths 3, 6, 3: (2,8) wins; (0,3) overlaps at 2, (7,10) overlaps at 7
    assert flatten([ent(0, 3), ent(2, 8), ent(7, 10)]) == [ent(2, 8)]


def test_flatten_tie_earlier_start_wins_even_if_later_in_list() -> None:
    assert flatten([ent(2, 6), ent(0, 4)]) == [ent(0, 4)]


def test_flatten_chain_of_equal_lengths() -> None:
    # all length 4: (0,4) kept, (3,7) overlaps it, (6,10) does not overlap (0,4) and is kept
    assert flatten([ent(0, 4), ent(3, 7), ent(6, 10)]) == [ent(0, 4), ent(6, 10)]


def test_flatten_same_span_earlier_in_list_wins() -> None:
    assert flatten([ent(0, 5, "location"), ent(0, 5, "person")]) == [ent(0, 5, "location")]
    assert flatten([ent(0, 5, "person"), ent(0, 5, "location")]) == [ent(0, 5, "person")]


def test_flatten_adjacent_spans_do_not_overlap() -> None:
    assert flatten([ent(0, 3), ent(3, 6), ent(6, 7)]) == [ent(0, 3), ent(3, 6), ent(6, 7)]


def test_flatten_output_sorted_by_position() -> None:
    assert flatten([ent(10, 12), ent(0, 3), ent(5, 9)]) == [ent(0, 3), ent(5, 9), ent(10, 12)]


def test_flatten_empty() -> None:
    assert flatten([]) == []


def test_flat_after_ground() -> None:
    # New0-2 " "3 York4-7 " "8 City9-12 " "13 and14-16 " "17 Ada18-20
    # --flat: "New York City" (0-13) absorbs "New York" (0-8) and "York" (4-8); "Ada" (18-21) stays.
    text = "New York City and Ada"
    entities, _ = ground(text, [("location", "New York"), ("location", "New York City"), ("person", "Ada")], EN)
    entities_york, _ = ground(text, [("person", "York")], EN)
    flat = flatten(entities + entities_york)
    assert spans(flat) == [(0, 13, "New York City", "location"), (18, 21, "Ada", "person")]


# --- shift --------------------------------------------------------------------------------------------------


def test_shift_moves_to_document_offsets() -> None:
    document = "First part. Paris is big."  # "First part. " is 12 characters; the chunk starts at 12
    chunk = document[12:]
    entities, _ = ground(chunk, [("location", "Paris")], EN)
    assert spans(entities) == [(0, 5, "Paris", "location")]
    moved = shift(entities, 12, document)
    assert spans(moved) == [(12, 17, "Paris", "location")]
    check_consistent(document, moved)


def test_shift_zero_offset_is_identity() -> None:
    entities = [Entity(0, 3, "Ada", "person")]
    assert shift(entities, 0, "Ada met Bob .") == entities


def test_shift_refuses_a_wrong_offset() -> None:
    with pytest.raises(AssertionError):
        shift([Entity(0, 5, "Paris", "location")], 11, "First part. Paris is big.")


def test_scores_follow_their_mention_and_a_span_keeps_the_highest() -> None:
    # "Paris" twice as location (0.4 and, through "paris", 0.9): both occurrences get 0.9; "Ada" has no score.
    text = "Paris and Paris, said Ada"
    pairs = [("location", "Paris"), ("location", "paris"), ("person", "Ada")]
    entities, missing = ground(text, pairs, ["person", "location"], {("location", "Paris"): 0.4,
                                                                     ("location", "paris"): 0.9})  # fmt: skip
    assert [(e.start, e.end, e.label, e.score) for e in entities] == [
        (0, 5, "location", 0.9),
        (10, 15, "location", 0.9),
        (22, 25, "person", None),
    ]
    assert missing == []
