"""split_text: sentence-aware chunks of a long text, as character spans of the original text.

Expected spans are worked out by hand with two deterministic counters: ``len`` (one token per
character, additive) and ``words`` (whitespace-separated words).
"""

from __future__ import annotations

import random

import pytest

from b2ner_cli.chunking import split_text


def words(text: str) -> int:
    return len(text.split())


def chunks(text: str, spans: list[tuple[int, int]]) -> list[str]:
    return [text[start:end] for start, end in spans]


def assert_covers(text: str, spans: list[tuple[int, int]]) -> None:
    """Spans are ordered, disjoint, non-empty, and chunks + the whitespace between them rebuild ``text``."""
    rebuilt, at = [], 0
    for start, end in spans:
        assert at <= start < end <= len(text), (spans, text)
        gap = text[at:start]
        assert gap.strip() == "", f"non-whitespace {gap!r} left out of every chunk"
        rebuilt += [gap, text[start:end]]
        at = end
    assert text[at:].strip() == "", f"non-whitespace tail {text[at:]!r} left out"
    rebuilt.append(text[at:])
    assert "".join(rebuilt) == text


# --- the whole text, empty text, bad budgets -------------------------------------------------------------------


def test_text_within_budget_is_one_span_of_the_whole_text() -> None:
    assert split_text("Hello world. Bye.", len, 17) == [(0, 17)]
    assert split_text("Hello world. Bye.", words, 3) == [(0, 17)]


def test_whole_text_span_keeps_its_surrounding_whitespace_when_it_fits() -> None:
    assert split_text("  hi there \n", len, 12) == [(0, 12)]


@pytest.mark.parametrize("text", ["", " ", "  \n\t \n", "\u3000"])
def test_whitespace_only_text_gives_no_chunk(text: str) -> None:
    assert split_text(text, len, 5) == []
    assert split_text(text, len, 1) == []


@pytest.mark.parametrize("max_tokens", [0, -1, -100])
def test_budget_below_one_raises_value_error(max_tokens: int) -> None:
    with pytest.raises(ValueError, match="max_tokens"):
        split_text("Some text. More text.", len, max_tokens)
    with pytest.raises(ValueError):
        split_text("", len, max_tokens)


# --- sentence ends ----------------------------------------------------------------------------------------------


def test_english_sentences_each_become_a_chunk_when_two_do_not_fit() -> None:
    text = "The cat sat. The dog ran away. Birds fly!"
    # words per sentence: 3, 4, 2; len: 12 + space, 17 + space, 10
    assert len(text) == 41
    spans = split_text(text, words, 5)
    assert spans == [(0, 12), (13, 30), (31, 41)]
    assert chunks(text, spans) == ["The cat sat.", "The dog ran away.", "Birds fly!"]


def test_english_sentences_are_packed_greedily_in_order() -> None:
    text = "The cat sat. The dog ran away. Birds fly!"
    # budget 6: 3 | 4 + 2 = 6
    assert chunks(text, split_text(text, words, 6)) == ["The cat sat.", "The dog ran away. Birds fly!"]
    assert split_text(text, words, 6) == [(0, 12), (13, 41)]
    # budget 8: 3 + 4 = 7 | 2 (7 + 2 = 9 is over)
    assert split_text(text, words, 8) == [(0, 30), (31, 41)]


@pytest.mark.parametrize("end", [".", "!", "?", "…", "?!", "...", "!!!"])
def test_each_latin_sentence_end_splits_before_packing_words(end: str) -> None:
    # 2 words then 5 words, budget 6: by sentences "Go now." | "Then ..."; word packing alone would give 6 | 1.
    text = f"Go now{end} Then we can all leave."
    first = f"Go now{end}"
    spans = split_text(text, words, 6)
    assert chunks(text, spans) == [first, "Then we can all leave."]
    assert spans == [(0, len(first)), (len(first) + 1, len(text))]


@pytest.mark.parametrize(
    ("opening", "closing"), [('"', '"'), ("'", "'"), ("“", "”"), ("‘", "’"), ("(", ")"), ("[", "]")]
)
def test_closing_quote_or_bracket_after_a_sentence_end_stays_with_the_sentence(opening: str, closing: str) -> None:
    text = f"Go {opening}now.{closing} Then we can all leave."
    assert len(text) == 32
    spans = split_text(text, words, 6)
    assert spans == [(0, 9), (10, 32)]
    assert chunks(text, spans) == [f"Go {opening}now.{closing}", "Then we can all leave."]


def test_period_not_followed_by_whitespace_is_not_a_sentence_end() -> None:
    # "v1.2" and "example.com" hold periods, but the only sentence end is "it. ".
    text = "v1.2 is out at example.com and we like it. Yes."
    # sentence one: v1.2 is out at example.com and we like it. -> 9 words; "Yes." -> 1 word
    spans = split_text(text, words, 9)
    assert chunks(text, spans) == ["v1.2 is out at example.com and we like it.", "Yes."]
    assert spans == [(0, 42), (43, 47)]


def test_chinese_sentence_ends_need_no_space() -> None:
    text = "我爱北京。天安门很大！你去过吗？"
    assert len(text) == 16  # 5 + 6 + 5 characters
    assert split_text(text, len, 6) == [(0, 5), (5, 11), (11, 16)]
    assert split_text(text, len, 11) == [(0, 11), (11, 16)]
    assert chunks(text, split_text(text, len, 11)) == ["我爱北京。天安门很大！", "你去过吗？"]


def test_chinese_semicolon_and_ellipsis_end_sentences() -> None:
    text = "甲乙丙；丁戊己…庚辛"
    # 甲乙丙； (0-4) 丁戊己… (4-8) 庚辛 (8-10); budget 5 keeps each sentence whole
    assert split_text(text, len, 5) == [(0, 4), (4, 8), (8, 10)]


def test_chinese_closing_quote_stays_with_its_sentence() -> None:
    text = "他说：“好。”我们走吧。"
    # 他 说 ： “ 好 。 ” = 7 characters, then 我们走吧。 = 5
    assert len(text) == 12
    spans = split_text(text, len, 7)
    assert spans == [(0, 7), (7, 12)]
    assert chunks(text, spans) == ["他说：“好。”", "我们走吧。"]


def test_space_after_a_chinese_sentence_end_is_left_out_of_both_chunks() -> None:
    text = "你好。 再见。"
    # "你好。 " is 4 characters, "再见。" 3: 4 + 3 > 4
    assert split_text(text, len, 4) == [(0, 3), (4, 7)]


def test_line_breaks_end_sentences() -> None:
    text = "first line\nsecond line here"
    # 2 words | 3 words; packing words alone would give "first line second" | "line here"
    spans = split_text(text, words, 3)
    assert spans == [(0, 10), (11, 27)]
    assert chunks(text, spans) == ["first line", "second line here"]


def test_windows_line_breaks_end_sentences_and_the_carriage_return_is_left_out() -> None:
    text = "line one\r\nline two"
    # "line one\r\n" (0-10, 2 words) | "line two" (10-18, 2 words)
    assert split_text(text, words, 2) == [(0, 8), (10, 18)]


def test_blank_lines_between_chunks_are_skipped() -> None:
    text = "alpha beta\n\n\n  gamma delta"
    spans = split_text(text, words, 2)
    assert spans == [(0, 10), (15, 26)]
    assert chunks(text, spans) == ["alpha beta", "gamma delta"]


def test_mixed_english_and_chinese_sentences() -> None:
    text = "Hi. 你好。Bye!"
    # "Hi. " (0-4) "你好。" (4-7) "Bye!" (7-11); budget 4 keeps each whole
    assert split_text(text, len, 4) == [(0, 3), (4, 7), (7, 11)]


# --- finer boundaries -------------------------------------------------------------------------------------------


def test_clause_boundaries_are_used_when_there_is_no_sentence_end() -> None:
    text = "alpha beta, gamma delta epsilon"
    # clauses: "alpha beta, " (2 words) | "gamma delta epsilon" (3); word packing alone: 3 | 2
    spans = split_text(text, words, 3)
    assert spans == [(0, 11), (12, 31)]
    assert chunks(text, spans) == ["alpha beta,", "gamma delta epsilon"]


def test_chinese_clause_marks_split_a_long_sentence() -> None:
    text = "北京，上海广州深圳、天津。"
    # one sentence of 13 > 7 characters; clauses 北京， (0-3) 上海广州深圳、 (3-10) 天津。 (10-13).
    # A hard cut alone would give (0, 7), (7, 13).
    assert split_text(text, len, 7) == [(0, 3), (3, 10), (10, 13)]


def test_a_sentence_that_fits_is_not_split_at_its_clauses() -> None:
    text = "One, two three. Four five six."
    # sentences of 3 words each; the comma in the first one is not used
    assert split_text(text, words, 3) == [(0, 15), (16, 30)]


def test_over_long_sentence_falls_back_to_clauses_then_words_and_leftovers_pack_with_the_next_sentence() -> None:
    text = "a b c, d e f g. h"
    # sentence "a b c, d e f g. " is 7 words > 3: clause "a b c, " (3), then words d | e | f | "g. " (1 each);
    # then sentence "h" (1). Packing: "a b c," | "d e f" | "g. h"
    spans = split_text(text, words, 3)
    assert spans == [(0, 6), (7, 12), (13, 17)]
    assert chunks(text, spans) == ["a b c,", "d e f", "g. h"]


def test_words_are_packed_when_there_is_no_punctuation() -> None:
    text = "one two three four five six seven"
    assert chunks(text, split_text(text, words, 3)) == ["one two three", "four five six", "seven"]
    assert split_text(text, words, 3) == [(0, 13), (14, 27), (28, 33)]


# --- hard cuts --------------------------------------------------------------------------------------------------


def test_single_word_over_budget_is_cut_by_characters() -> None:
    assert split_text("abcdefghij", len, 4) == [(0, 4), (4, 8), (8, 10)]


def test_hard_cut_follows_the_token_counter_not_characters() -> None:
    def pairs(text: str) -> int:  # one token per two characters, rounded up
        return (len(text) + 1) // 2

    # 10 characters = 5 tokens > 2: the longest prefix of at most 2 tokens is 4 characters
    assert split_text("abcdefghij", pairs, 2) == [(0, 4), (4, 8), (8, 10)]
    assert split_text("abcdefghij", pairs, 3) == [(0, 6), (6, 10)]


def test_over_long_word_among_short_ones() -> None:
    text = "hi abcdefghij yo"
    # words "hi " (3), "abcdefghij " (11 > 4: cut abcd | efgh | "ij "), "yo" (2); "ij yo" would be 5 > 4
    spans = split_text(text, len, 4)
    assert spans == [(0, 2), (3, 7), (7, 11), (11, 13), (14, 16)]
    assert chunks(text, spans) == ["hi", "abcd", "efgh", "ij", "yo"]


def test_long_chinese_run_without_punctuation_is_hard_cut() -> None:
    text = "一二三四五六七八九十"
    assert split_text(text, len, 3) == [(0, 3), (3, 6), (6, 9), (9, 10)]


def test_budget_of_one_character_gives_one_chunk_per_non_space_character() -> None:
    text = "ab c。d"
    assert chunks(text, split_text(text, len, 1)) == ["a", "b", "c", "。", "d"]


# --- invariants over many texts ---------------------------------------------------------------------------------

HAND_TEXTS = [
    "The cat sat. The dog ran away. Birds fly!",
    "  Leading and trailing space.  And more text here.   ",
    "他说：“好。”我们走吧。天安门很大！你去过吗？",
    "Line one\nLine two, with a clause; and more\n\nLine three is the longest line of them all.",
    "supercalifragilisticexpialidocious is long, very long. 中文句子没有空格也很长很长很长。End",
    "Mixed: 北京 and Paris.\tTabs\tand  double  spaces…  Done?",
]


def random_texts(count: int) -> list[str]:
    rng = random.Random(20240607)
    alphabet = list("abcdefg   ,.!?;:\n") + list("北京上海。！，、") + ['"', ")", "…", "\t"]
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 80))) for _ in range(count)]


@pytest.mark.parametrize("text", HAND_TEXTS + random_texts(60))
def test_spans_cover_the_text_and_keep_each_chunk_within_budget(text: str) -> None:
    for counter in (len, words):
        for budget in (1, 2, 3, 5, 8, 13, 40):
            spans = split_text(text, counter, budget)
            if not text.strip():
                assert spans == []
                continue
            assert_covers(text, spans)
            non_space = "".join(text.split())
            assert "".join("".join(chunk.split()) for chunk in chunks(text, spans)) == non_space
            if counter(text) <= budget:
                assert spans == [(0, len(text))]
                continue
            for chunk in chunks(text, spans):
                assert chunk == chunk.strip(), f"chunk {chunk!r} keeps edge whitespace"
                assert counter(chunk) <= budget, (chunk, budget)


# --- cost: characters given to the token counter grow linearly with the text ----------------------------------


@pytest.mark.parametrize("unit", ["x", "中"])
def test_characters_counted_grow_linearly_on_text_without_whitespace(unit: str) -> None:
    def counted(size: int) -> int:
        seen = 0

        def count(text: str) -> int:
            nonlocal seen
            seen += len(text)
            return len(text)

        spans = split_text(unit * size, count, 100)
        assert spans == [(a, min(a + 100, size)) for a in range(0, size, 100)]
        return seen

    small, large = counted(10_000), counted(100_000)
    # linear: 10x the text is about 10x the characters counted; the bisection over the whole remainder was ~100x
    assert large <= 15 * small, (small, large)
    assert large <= 60 * 100_000, large
