"""CoNLL columns joined as written: Chinese character files (Weibo, Resume), word-level mixes, English (CoNLL-2003)."""

from __future__ import annotations

from pathlib import Path

import pytest

from b2ner_cli.evaluation.readers import read_conll
from b2ner_cli.io.conll import join_tokens, script_language

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared(name: str) -> Path:
    path = DATA / name
    if not path.is_file():
        pytest.skip(f"{path} is absent (the shared data slices live beside the checkout)")
    return path


def spans(record: object) -> list[tuple[int, int, str, str]]:
    return [(e.start, e.end, e.text, e.label) for e in record.entities]  # type: ignore[attr-defined]


def test_word_level_tokens_join_without_spaces_next_to_cjk_and_full_width_punctuation() -> None:
    tokens = ["我", "在", "iPhone", "4", "上", "看", "NBA", "，", "good", "game", "。"]
    text, offsets = join_tokens(tokens)
    # 在|iPhone, 4|上, 看|NBA, NBA|，, ，|good and game|。 touch a wide character: no space;
    # iPhone|4 and good|game are Latin words: one space.
    assert text == "我在iPhone 4上看NBA，good game。"
    assert [text[s:e] for s, e in offsets] == tokens
    assert offsets[2:4] == [(2, 8), (9, 10)]


def test_character_tokens_with_cjk_join_with_nothing_digits_and_latin_included() -> None:
    text, offsets = join_tokens(["1", "9", "6", "6", "年", "P", "M", "P"])
    assert text == "1966年PMP" and offsets[4] == (4, 5)
    # without any wide character, single characters stay words
    assert join_tokens(["I", "a", "m", "."])[0] == "I a m ."


def test_english_tokens_keep_their_spaces() -> None:
    assert join_tokens(["EU", "rejects", "German", "call", "."])[0] == "EU rejects German call ."


def test_language_is_the_share_of_han_among_letters() -> None:
    assert script_language("1966年出生，汉族") == "zh"  # 6 Han of 6 letters (digits are not letters)
    assert script_language("美国Syracuse大学") == "en"  # 4 Han of 12 letters
    assert script_language("美国Syr大学") == "zh"  # 4 Han of 7 letters
    assert script_language("2024") == "en"


def test_inline_mixed_chinese_file_offsets_line_up(tmp_path: Path) -> None:
    path = tmp_path / "mixed.bio"
    path.write_text(
        "在 O\niPhone B-PRODUCT\n4 I-PRODUCT\n上 O\n看 O\nNBA B-ORG\n。 O\n\n"
        "李 B-PER\n明 E-PER\n去 O\n北 B-LOC\n京 M-LOC\n市 E-LOC\n看 O\n球 O\n赛 O\n",
        encoding="utf-8",
    )
    first, second = read_conll(path)
    # 在 0, iPhone 1-7, space 7, 4 8-9, 上 9, 看 10, NBA 11-14, 。14
    assert first.text == "在iPhone 4上看NBA。"
    assert spans(first) == [(1, 9, "iPhone 4", "PRODUCT"), (11, 14, "NBA", "ORG")]
    assert second.text == "李明去北京市看球赛" and spans(second) == [(0, 2, "李明", "PER"), (3, 6, "北京市", "LOC")]
    # the language is the file's: 12 Han (3 + 9) of 21 letters (12 + 9) -> zh, for both sentences; the first
    # alone (3 Han of 12 letters) would read as English and split the dataset in two
    assert first.language == second.language == "zh"


def test_resume_sentence_with_digits_and_latin_among_han() -> None:
    records = read_conll(shared("resume-train-120.bmes"))
    assert len(records) == 120 and {r.language for r in records} == {"zh"}
    second = records[1]  # lines 19-...: 1 9 6 6 年 出 生 ， 汉 族 ...
    assert second.text.startswith("1966年出生，汉族，中共党员，")
    assert second.id.endswith("resume-train-120.bmes:2")
    record = records[99]  # 吴建南，男，西安交通大学管理学博士，美国Syracuse大学Maxwell公民与公共事务学院...
    assert record.text.startswith("吴建南，男，西安交通大学管理学博士，美国Syracuse大学Maxwell公民与公共事务学院")
    # by hand: 吴建南 0-3, ，3, 男 4, ，5, 西安交通大学 6-12, 管理学 12-15, 博士 15-17, ，17,
    # 美国 18-20, Syracuse 20-28, 大学 28-30, Maxwell 30-37, 公民与公共事务学院 37-46
    assert spans(record)[:5] == [
        (0, 3, "吴建南", "NAME"), (6, 12, "西安交通大学", "ORG"), (12, 15, "管理学", "PRO"), (15, 17, "博士", "EDU"),
        (18, 46, "美国Syracuse大学Maxwell公民与公共事务学院", "ORG"),
    ]  # fmt: skip


def test_weibo_sentences_join_with_full_width_punctuation() -> None:
    records = read_conll(shared("weibo-train-120.conll"))
    assert len(records) == 120 and {r.language for r in records} == {"zh"}
    assert records[0].text == "科技全方位资讯智能，快捷的汽车生活需要有三屏一云爱你"
    assert " " not in "".join(r.text for r in records)  # the file holds no space token, so no text has one
    for record in records:
        for entity in record.entities:
            assert record.text[entity.start : entity.end] == entity.text


def test_conll2003_stays_english_with_spaces() -> None:
    records = read_conll(shared("conll2003-train-200.txt"))
    assert records[0].text == "EU rejects German call to boycott British lamb ." and records[0].language == "en"
    assert spans(records[0]) == [(0, 2, "EU", "ORG"), (11, 17, "German", "MISC"), (34, 41, "British", "MISC")]
