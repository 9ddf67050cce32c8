"""Answer parsing: expected pairs worked out by hand from the answer grammar (spec section 3)."""

from __future__ import annotations

import pytest
from spec import SPEC_ZH_LABELS as ZH

from b2ner_cli.answers import ParsedAnswer, parse_answer

EN = ("person", "organization", "location")
MOVIE = ("movie genre", "year or time period", "movie title", "movie actor", "movie age rating")


def test_spec_published_continuation_en() -> None:
    parsed = parse_answer(" year or time period: 1990 s; movie genre: romance; movie actor: kelsy grammer", MOVIE)
    assert parsed.pairs == [
        ("year or time period", "1990 s"),
        ("movie genre", "romance"),
        ("movie actor", "kelsy grammer"),
    ]
    assert parsed.unknown_labels == [] and parsed.malformed == []


def test_spec_published_continuation_zh() -> None:
    parsed = parse_answer(" 组织机构名->公司: 暴雪中国; 人名: Moon; 作品名->游戏作品: 星际争霸2; 人名: Infi", ZH)
    assert parsed.pairs == [
        ("组织机构名->公司", "暴雪中国"),
        ("人名", "Moon"),
        ("作品名->游戏作品", "星际争霸2"),
        ("人名", "Infi"),
    ]
    assert parsed.unknown_labels == [] and parsed.malformed == []


@pytest.mark.parametrize("answer", ["None", " None", " None ", "", "   ", "\n"])
def test_none_or_empty_answer_has_nothing(answer: str) -> None:
    assert parse_answer(answer, EN) == ParsedAnswer([], [], [])
    assert parse_answer(answer, EN, truncated=True) == ParsedAnswer([], [], [])


def test_labels_matched_case_insensitively_returned_in_asked_spelling() -> None:
    parsed = parse_answer(" Person: Steve Jobs; ORGANIZATION: Apple; LoCaTiOn: Cupertino", EN)
    assert parsed.pairs == [("person", "Steve Jobs"), ("organization", "Apple"), ("location", "Cupertino")]
    assert parsed.unknown_labels == []


def test_asked_spelling_kept_when_asked_in_capitals() -> None:
    parsed = parse_answer(" per: Ada; Loc: Paris", ("PER", "LOC"))
    assert parsed.pairs == [("PER", "Ada"), ("LOC", "Paris")]


def test_labels_matched_space_insensitively() -> None:
    # Extra inner spaces, spaces before the colon, no space after the colon.
    parsed = parse_answer(" movie  actor : kelsy grammer;Movie Genre:romance;  year or  time period  :1990 s", MOVIE)
    assert parsed.pairs == [
        ("movie actor", "kelsy grammer"),
        ("movie genre", "romance"),
        ("year or time period", "1990 s"),
    ]
    assert parsed.unknown_labels == [] and parsed.malformed == []


def test_mention_keeps_its_own_case_and_inner_spaces() -> None:
    parsed = parse_answer(" person:  kelsy  GRAMMER  ", EN)
    assert parsed.pairs == [("person", "kelsy  GRAMMER")]


def test_mention_may_contain_colons() -> None:
    parsed = parse_answer(" time: 10:30; person: Ada", ("person", "time"))
    assert parsed.pairs == [("time", "10:30"), ("person", "Ada")]


def test_mention_with_colon_and_odd_label_spacing() -> None:
    parsed = parse_answer(" Time  : 10:30:15", ("time",))
    assert parsed.pairs == [("time", "10:30:15")]


def test_longest_asked_label_prefix_wins_label_with_colon() -> None:
    # "time: start" is asked, so "time: start: 9am" is label "time: start", mention "9am",
    # whatever the user's order of the labels.
    for labels in (("time", "time: start"), ("time: start", "time")):
        parsed = parse_answer(" time: start: 9am; time: noon", labels)
        assert parsed.pairs == [("time: start", "9am"), ("time", "noon")]


def test_label_with_colon_not_asked_becomes_mention_text() -> None:
    # Only "time" is asked: the piece reads label "time", mention "start: 9am".
    parsed = parse_answer(" time: start: 9am", ("time",))
    assert parsed.pairs == [("time", "start: 9am")]


def test_longest_prefix_between_nested_labels() -> None:
    for labels in (("movie", "movie actor"), ("movie actor", "movie")):
        parsed = parse_answer(" movie actor: kelsy grammer; movie: Frasier", labels)
        assert parsed.pairs == [("movie actor", "kelsy grammer"), ("movie", "Frasier")]


def test_label_prefix_must_end_at_the_colon() -> None:
    # "org" is a prefix of "organization" but "organization" was not asked: unknown, not ("org", ...).
    parsed = parse_answer(" organization: Apple", ("org",))
    assert parsed.pairs == []
    assert parsed.unknown_labels == [("organization", "Apple")]


def test_full_width_separators_and_colons() -> None:
    parsed = parse_answer("人名：张三；地名：北京; 人名: 李四", ("人名", "地名"))
    assert parsed.pairs == [("人名", "张三"), ("地名", "北京"), ("人名", "李四")]
    assert parsed.malformed == []


def test_full_width_colon_inside_mention() -> None:
    parsed = parse_answer("地名：北京：朝阳区", ("地名",))
    assert parsed.pairs == [("地名", "北京：朝阳区")]


def test_mention_none_is_skipped() -> None:
    parsed = parse_answer(" person: None; location: Paris; organization: None", EN)
    assert parsed.pairs == [("location", "Paris")]
    assert parsed.unknown_labels == [] and parsed.malformed == []


def test_only_none_mentions_give_no_pairs() -> None:
    assert parse_answer(" person: None", EN) == ParsedAnswer([], [], [])


def test_piece_without_colon_is_malformed() -> None:
    parsed = parse_answer(" person: Steve Jobs; just some text; location: Paris", EN)
    assert parsed.pairs == [("person", "Steve Jobs"), ("location", "Paris")]
    assert parsed.malformed == ["just some text"]
    assert parsed.unknown_labels == []


def test_answer_without_any_colon_is_malformed() -> None:
    parsed = parse_answer(" Steve Jobs", EN)
    assert parsed.pairs == [] and parsed.unknown_labels == []
    assert parsed.malformed == ["Steve Jobs"]


def test_piece_with_empty_label_is_malformed() -> None:
    parsed = parse_answer(" : Paris; location: Rome", EN)
    assert parsed.pairs == [("location", "Rome")]
    assert parsed.malformed == [": Paris"]


def test_empty_pieces_are_ignored() -> None:
    parsed = parse_answer(" person: Ada;; location: Paris;", EN)
    assert parsed.pairs == [("person", "Ada"), ("location", "Paris")]
    assert parsed.malformed == [] and parsed.unknown_labels == []


def test_unknown_labels_are_set_aside_not_paired() -> None:
    parsed = parse_answer(" person: Ada; city: Bob; person: Bob", EN)
    assert parsed.pairs == [("person", "Ada"), ("person", "Bob")]
    assert parsed.unknown_labels == [("city", "Bob")]
    assert parsed.malformed == []


def test_unknown_label_keeps_the_models_spelling() -> None:
    parsed = parse_answer(" City : Paris; location: Rome", EN)
    assert parsed.unknown_labels == [("City", "Paris")]
    assert parsed.pairs == [("location", "Rome")]


def test_unknown_label_with_colon_in_mention() -> None:
    parsed = parse_answer(" date: 10:30", ("time",))
    assert parsed.pairs == []
    assert parsed.unknown_labels == [("date", "10:30")]


def test_order_and_duplicates_of_the_answer_are_kept() -> None:
    parsed = parse_answer(" location: Paris; person: Ada; location: Paris", EN)
    assert parsed.pairs == [("location", "Paris"), ("person", "Ada"), ("location", "Paris")]


def test_truncated_drops_the_last_piece() -> None:
    answer = " person: Steve Jobs; organization: App"
    assert parse_answer(answer, EN).pairs == [("person", "Steve Jobs"), ("organization", "App")]
    truncated = parse_answer(answer, EN, truncated=True)
    assert truncated.pairs == [("person", "Steve Jobs")]
    assert truncated.malformed == [] and truncated.unknown_labels == []


def test_truncated_single_piece_gives_nothing() -> None:
    assert parse_answer(" person: Steve Jo", EN, truncated=True) == ParsedAnswer([], [], [])


def test_truncated_cut_inside_a_label_is_not_counted_as_malformed() -> None:
    # Untruncated, "organiz" has no colon and is malformed; truncated, it is simply dropped.
    assert parse_answer(" person: Ada; organiz", EN).malformed == ["organiz"]
    truncated = parse_answer(" person: Ada; organiz", EN, truncated=True)
    assert truncated.pairs == [("person", "Ada")]
    assert truncated.malformed == []


def test_truncated_zh_full_width_separator() -> None:
    parsed = parse_answer("人名：张三；地名：北", ("人名", "地名"), truncated=True)
    assert parsed.pairs == [("人名", "张三")]
