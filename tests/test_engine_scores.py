"""Mention scores from token log-probabilities: the formula on hand-worked answers, and token texts that are exact
for byte-level tokens (characters split across tokens)."""

from __future__ import annotations

import math

import pytest

from b2ner_cli.answers import answer_pieces, parse_answer, split_piece
from b2ner_cli.engine.scores import mention_scores, token_texts

ln = math.log


def test_geometric_mean_of_each_pieces_tokens() -> None:
    answer = " person: Barack Obama; location: Paris"
    texts = [" person", ":", " Barack", " Obama", ";", " location", ":", " Paris"]
    probs = [0.9, 1.0, 0.5, 0.8, 0.01, 0.6, 1.0, 0.4]  # the separator is unlikely: it must not count
    scores = mention_scores(answer, texts, [ln(p) for p in probs])
    assert [(label, mention) for label, mention, _ in scores] == [("person", "Barack Obama"), ("location", "Paris")]
    assert scores[0][2] == pytest.approx(0.36**0.25)  # (0.9 * 1.0 * 0.5 * 0.8) ** (1/4) = 0.7746
    assert scores[1][2] == pytest.approx(0.24 ** (1 / 3))  # (0.6 * 1.0 * 0.4) ** (1/3) = 0.6214


def test_tokens_straddling_a_separator_belong_to_the_piece_they_touch() -> None:
    answer = " person: Ada; person: Bob"
    # "Ada;" touches the first piece; "; " alone would touch none; " person" after it opens the second
    texts = [" person", ": Ada;", " person", ":", " Bob"]
    probs = [0.5, 0.8, 0.9, 0.9, 0.1]
    scores = mention_scores(answer, texts, [ln(p) for p in probs])
    assert scores == [
        ("person", "Ada", pytest.approx((0.5 * 0.8) ** 0.5)),
        ("person", "Bob", pytest.approx((0.9 * 0.9 * 0.1) ** (1 / 3))),
    ]
    texts = [" person: Ada", "; ", "person: Bob"]
    scores = mention_scores(answer, texts, [ln(0.5), ln(0.001), ln(0.2)])
    assert [s for _, _, s in scores] == [pytest.approx(0.5), pytest.approx(0.2)]


def test_a_token_without_text_counts_for_the_character_it_leads_into() -> None:
    # "李" is three bytes: the first token carries the space and one byte of it, so its own text is " "; a token
    # with a lone byte has no text and belongs with the character its bytes start.
    answer = " 人名: 李明"
    texts = [" ", "人名", ":", " ", "", "李", "明"]
    probs = [0.5, 0.8, 1.0, 0.5, 0.2, 0.9, 0.7]
    # the piece "人名: 李明" covers characters 1..6; the leading " " (character 0) stays outside it
    scores = mention_scores(answer, texts, [ln(p) for p in probs])
    assert scores == [("人名", "李明", pytest.approx((0.8 * 1.0 * 0.5 * 0.2 * 0.9 * 0.7) ** (1 / 6)))]


def test_labels_are_matched_as_parse_answer_matches_them() -> None:
    answer = "Date: 3: 15 pm; film: Up; None; junk"
    texts = ["Date", ":", " 3", ":", " 15", " pm", ";", " film", ":", " Up", ";", " None", ";", " junk"]
    probs = [0.5] * len(texts)
    scores = mention_scores(answer, texts, [ln(p) for p in probs], labels=["date"])
    # asked label "date" answers "Date"; "film" is not asked but is a label: mention piece; "None" and "junk" are not
    assert [(label, mention) for label, mention, _ in scores] == [("date", "3: 15 pm"), ("film", "Up")]
    assert parse_answer(answer, ["date"]).pairs == [("date", "3: 15 pm")]
    assert parse_answer(answer, ["date"]).unknown_labels == [("film", "Up")]
    assert all(s == pytest.approx(0.5) for _, _, s in scores)


def test_none_answers_and_mismatched_inputs() -> None:
    assert mention_scores(" None", [" None"], [ln(0.9)]) == []
    assert mention_scores("", [], []) == []
    with pytest.raises(ValueError, match="do not join"):
        mention_scores(" person: Ada", [" person", ":"], [0.0, 0.0])
    with pytest.raises(ValueError, match="2 token texts but 1"):
        mention_scores(" person: Ada", [" person", ": Ada"], [0.0])


def test_answer_pieces_and_split_piece() -> None:
    answer = " person: Ada ;  location: Paris；;  "
    assert [answer[s:e] for s, e in answer_pieces(answer)] == ["person: Ada", "location: Paris"]
    assert answer_pieces(" None") == []
    assert split_piece(" city of: Paris ", ["city of"]) == ("city of", "Paris")
    assert split_piece("person: None") is None
    assert split_piece("no colon here") is None


class ByteTokenizer:
    """Byte-level decoding as a byte-level BPE (or SentencePiece byte fallback) does it: bytes joined, then UTF-8
    with replacement characters for incomplete sequences; id 99 is a special token."""

    def __init__(self, vocab: dict[int, bytes]) -> None:
        self.vocab = vocab

    def decode(self, ids, skip_special_tokens=False, clean_up_tokenization_spaces=False) -> str:
        return b"".join(self.vocab[i] for i in ids if not (skip_special_tokens and i == 99)).decode(errors="replace")

    def batch_decode(self, sequences, **kwargs) -> list[str]:
        return [self.decode(ids, **kwargs) for ids in sequences]


def test_token_texts_with_characters_split_across_tokens() -> None:
    li, ming = "李".encode(), "明".encode()  # e6 9d 8e, e6 98 8e
    vocab = {
        0: b" \xe4\xba\xba\xe5\x90\x8d",  # " 人名"
        1: b":",
        2: b" " + li[:1],  # a space and the first byte of 李
        3: li[1:2],  # the second byte: completes nothing
        4: li[2:] + ming,  # completes 李, then all of 明
        5: ming[:2],
        6: ming[2:],
        99: b"<special>",
    }
    tokenizer = ByteTokenizer(vocab)
    tokens = [0, 1, 2, 3, 99, 4, 5, 6]
    assert tokenizer.decode(tokens, skip_special_tokens=True) == " 人名: 李明明"
    assert token_texts(tokenizer, tokens) == [" 人名", ":", " ", "", "", "李明", "", "明"]
    assert token_texts(tokenizer, []) == []


def test_token_texts_join_to_the_answer_with_a_real_byte_level_tokenizer() -> None:
    from b2ner_cli.testing import build_tokenizer

    tokenizer = build_tokenizer()
    answer = " 人名: 李明; 地名: 故宫博物院; person: Barack Obama; 組織: 東京"  # 組織 and 東京 are not in its corpus
    tokens = tokenizer.encode(answer, add_special_tokens=False)
    texts = token_texts(tokenizer, tokens)
    assert "".join(texts) == answer and len(texts) == len(tokens)
    assert "" in texts  # unseen CJK characters are spelled in bytes, so some tokens complete no character
    for token, text in zip(tokens, texts, strict=True):
        alone = tokenizer.decode([token])
        if "\ufffd" not in alone:  # a token of whole characters has exactly its own text
            assert text == alone
