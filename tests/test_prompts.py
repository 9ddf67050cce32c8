"""Prompts: golden strings written by hand from the spec (b2ner-format.md, section 2), never from the code."""

from __future__ import annotations

import pytest
from spec import SPEC_ZH_LABELS

import b2ner_cli
from b2ner_cli.errors import UsageError
from b2ner_cli.prompts import PROMPT_ID, Example, LabelSet, build_instruction, detect_lang

# --- the two literal examples of spec section 2, copied character for character (BOS included) ---

SPEC_EN_LITERAL = (
    "<s>Given the label set of entities, please recognize all the entities in the text. The answer format should be "
    '"entity label: entity; entity label: entity". \nLabel Set: movie genre, year or time period, movie title, '
    "movie actor, movie age rating \n\nText: what is a good 1990 s romance movie starring kelsy grammer \nAnswer:"
)
SPEC_EN_LABELS = ("movie genre", "year or time period", "movie title", "movie actor", "movie age rating")
SPEC_EN_TEXT = "what is a good 1990 s romance movie starring kelsy grammer"

SPEC_ZH_LITERAL = (
    '<s>给定实体的标签范围，请识别文本中属于这些标签的所有实体。答案格式为 "实体标签: 实体; 实体标签: 实体"。\n'
    "标签范围: 人名, 作品名->文字作品, 作品名->游戏作品, 作品名->影像作品, 组织机构名->政府机构, 组织机构名->公司, "
    "组织机构名->其它, 地名\n\n"
    "文本: 暴雪中国时隔多年之后再次举办了官方比赛，"
    "而Moon在星际争霸2中发挥不是很理想，对此Infi感觉Moon是哪里出了问题呢？ \n"
    "答案:"
)
SPEC_ZH_TEXT = (
    "暴雪中国时隔多年之后再次举办了官方比赛，而Moon在星际争霸2中发挥不是很理想，对此Infi感觉Moon是哪里出了问题呢？"
)

# The fixed heads of the templates, typed from the spec.
EN_HEAD = (
    "Given the label set of entities, please recognize all the entities in the text. "
    'The answer format should be "entity label: entity; entity label: entity". '
)
ZH_HEAD = '给定实体的标签范围，请识别文本中属于这些标签的所有实体。答案格式为 "实体标签: 实体; 实体标签: 实体"。'


def test_spec_literal_example_en() -> None:
    instruction = build_instruction(SPEC_EN_TEXT, LabelSet(SPEC_EN_LABELS), "en")
    assert "<s>" + instruction == SPEC_EN_LITERAL


def test_spec_literal_example_zh() -> None:
    instruction = build_instruction(SPEC_ZH_TEXT, LabelSet(SPEC_ZH_LABELS), "zh")
    assert "<s>" + instruction == SPEC_ZH_LITERAL


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_instruction_has_no_bos_and_ends_with_answer_prefix_without_space(lang: str) -> None:
    instruction = build_instruction("x", LabelSet(("a",)), lang)  # type: ignore[arg-type]
    assert "<s>" not in instruction
    assert instruction.endswith({"en": " \nAnswer:", "zh": " \n答案:"}[lang])


def test_zero_shot_en_small() -> None:
    expected = (
        "Given the label set of entities, please recognize all the entities in the text. The answer format should be "
        '"entity label: entity; entity label: entity". \nLabel Set: person, organization, location \n\n'
        "Text: Barack Obama visited Microsoft in Seattle . \nAnswer:"
    )
    got = build_instruction(
        "Barack Obama visited Microsoft in Seattle .", LabelSet(("person", "organization", "location")), "en"
    )
    assert got == expected


def test_zero_shot_zh_small() -> None:
    # zh zero-shot: no space before the first \n, none after the labels, ASCII ": " after 标签范围 and 文本.
    expected = (
        '给定实体的标签范围，请识别文本中属于这些标签的所有实体。答案格式为 "实体标签: 实体; 实体标签: 实体"。\n'
        "标签范围: 人名, 地名\n\n文本: 李明昨天去了北京。 \n答案:"
    )
    assert build_instruction("李明昨天去了北京。", LabelSet(("人名", "地名")), "zh") == expected


def test_with_descriptions_en() -> None:
    labels = LabelSet(("person", "location"), ("a human being", "a place on Earth"))
    expected = (
        "Given the label set of entities and their descriptions, please recognize all the entities in the text. "
        'The answer format should be "entity label: entity; entity label: entity". \n'
        "Label Set: person, location \n"
        'Label Description: person means "a human being"; location means "a place on Earth" \n\n'
        "Text: Obama visited Paris. \nAnswer:"
    )
    assert build_instruction("Obama visited Paris.", labels, "en") == expected


def test_with_descriptions_zh() -> None:
    labels = LabelSet(("人名", "地名"), ("人的名字", "地点的名字"))
    expected = (
        "给定实体的标签范围以及对每个标签的描述，请识别文本中属于这些标签的所有实体。"
        '答案格式为 "实体标签: 实体; 实体标签: 实体"。\n'
        "标签范围: 人名, 地名\n"
        '标签描述: 人名 是指 "人的名字"; 地名 是指 "地点的名字"\n\n'
        "文本: 李明昨天去了北京。 \n答案:"
    )
    assert build_instruction("李明昨天去了北京。", labels, "zh") == expected


def test_few_shot_en() -> None:
    examples = (
        Example("Steve Jobs founded Apple.", "person: Steve Jobs; organization: Apple"),
        Example("It rained.", "None"),
    )
    expected = (
        "Given the label set of entities, please recognize all the entities in the text. The answer format should be "
        '"entity label: entity; entity label: entity". Below are some examples. \n'
        "Label Set: person, organization \n\n"
        "Text: Steve Jobs founded Apple. \nAnswer: person: Steve Jobs; organization: Apple \n\n"
        "Text: It rained. \nAnswer: None \n\n"
        "Text: Tim Cook runs Apple. \nAnswer:"
    )
    assert build_instruction("Tim Cook runs Apple.", LabelSet(("person", "organization")), "en", examples) == expected


def test_few_shot_zh() -> None:
    # The zh few-shot template, unlike zh zero-shot, has a space before each of its first two "\n".
    examples = (Example("张三住在上海。", "人名: 张三; 地名: 上海"),)
    expected = (
        '给定实体的标签范围，请识别文本中属于这些标签的所有实体。答案格式为 "实体标签: 实体; 实体标签: 实体"。'
        "下面有一些例子。 \n标签范围: 人名, 地名 \n\n"
        "文本: 张三住在上海。 \n答案: 人名: 张三; 地名: 上海 \n\n"
        "文本: 李明昨天去了北京。 \n答案:"
    )
    assert build_instruction("李明昨天去了北京。", LabelSet(("人名", "地名")), "zh", examples) == expected


def test_few_shot_with_empty_examples_is_zero_shot() -> None:
    labels = LabelSet(("person",))
    expected = EN_HEAD + "\nLabel Set: person \n\nText: Ada. \nAnswer:"
    assert build_instruction("Ada.", labels, "en", ()) == expected
    assert build_instruction("Ada.", labels, "en", []) == expected


BRACEY = "a {} b {0} c {text} d {labels_str} e @@examples@@ f {label_descriptions_str} g {{x}} h {"


def test_text_with_braces_and_placeholders_is_verbatim_zero_shot() -> None:
    expected = EN_HEAD + "\nLabel Set: person \n\nText: " + BRACEY + " \nAnswer:"
    assert build_instruction(BRACEY, LabelSet(("person",)), "en") == expected


@pytest.mark.parametrize("text", ["Use {} here", "Use {0} here", "f({}, {0}) and {0[0]}"])
def test_text_that_str_format_would_accept_is_verbatim(text: str) -> None:
    # Upstream's second str.format(sentence) succeeds on these and garbles them (spec section 2): not here.
    expected_en = EN_HEAD + "\nLabel Set: person \n\nText: " + text + " \nAnswer:"
    assert build_instruction(text, LabelSet(("person",)), "en") == expected_en
    expected_zh = ZH_HEAD + "\n标签范围: 人名\n\n文本: " + text + " \n答案:"
    assert build_instruction(text, LabelSet(("人名",)), "zh") == expected_zh
    expected_few = (
        EN_HEAD + "Below are some examples. \nLabel Set: person \n\nText: Ada. \nAnswer: person: Ada \n\n"
        "Text: " + text + " \nAnswer:"
    )
    few = build_instruction(text, LabelSet(("person",)), "en", (Example("Ada.", "person: Ada"),))
    assert few == expected_few


def test_text_with_braces_and_placeholders_is_verbatim_zh() -> None:
    expected = ZH_HEAD + "\n标签范围: 人名\n\n文本: " + BRACEY + " \n答案:"
    assert build_instruction(BRACEY, LabelSet(("人名",)), "zh") == expected


def test_text_with_braces_is_verbatim_with_descriptions() -> None:
    labels = LabelSet(("person",), ("someone {0} like {}",))
    expected = (
        "Given the label set of entities and their descriptions, please recognize all the entities in the text. "
        'The answer format should be "entity label: entity; entity label: entity". \n'
        'Label Set: person \nLabel Description: person means "someone {0} like {}" \n\n'
        "Text: " + BRACEY + " \nAnswer:"
    )
    assert build_instruction(BRACEY, labels, "en") == expected


def test_text_with_examples_marker_is_verbatim_few_shot() -> None:
    # "@@examples@@" in the text (and in an example) must not receive the examples a second time.
    examples = (Example("see @@examples@@ and {0}", "None"),)
    expected = (
        EN_HEAD + "Below are some examples. \nLabel Set: person \n\n"
        "Text: see @@examples@@ and {0} \nAnswer: None \n\n"
        "Text: " + BRACEY + " \nAnswer:"
    )
    assert build_instruction(BRACEY, LabelSet(("person",)), "en", examples) == expected


def test_multiline_text_is_verbatim() -> None:
    text = "Line one.\n\nLine two\twith a tab  and two spaces "
    expected = EN_HEAD + "\nLabel Set: person \n\nText: " + text + " \nAnswer:"
    assert build_instruction(text, LabelSet(("person",)), "en") == expected


def test_labels_str_user_order_unchanged_comma_space() -> None:
    # No lowercasing, no sorting, hierarchical names kept as is; ", " also in zh.
    labels = LabelSet(("Movie Genre", "ORG", "作品名->游戏作品", "a"))
    en = build_instruction("t", labels, "en")
    assert "\nLabel Set: Movie Genre, ORG, 作品名->游戏作品, a \n\n" in en
    zh = build_instruction("t", labels, "zh")
    assert "\n标签范围: Movie Genre, ORG, 作品名->游戏作品, a\n\n" in zh
    reordered = build_instruction("t", LabelSet(("a", "ORG", "Movie Genre", "作品名->游戏作品")), "en")
    assert "\nLabel Set: a, ORG, Movie Genre, 作品名->游戏作品 \n\n" in reordered


def test_single_label_has_no_separator() -> None:
    assert build_instruction("t", LabelSet(("person",)), "en") == EN_HEAD + "\nLabel Set: person \n\nText: t \nAnswer:"


def test_example_answer_gets_exactly_one_leading_space() -> None:
    # Spec section 2/6: "Answer:" + target, target = " " + answer; the prompt adds the leading space.
    got = build_instruction("t", LabelSet(("person",)), "en", (Example("Ada.", "person: Ada"),))
    assert "Text: Ada. \nAnswer: person: Ada \n\nText: t \nAnswer:" in got
    assert "Answer:person" not in got and "Answer:  person" not in got


def test_few_shot_and_descriptions_together_are_refused() -> None:
    # There is no published template combining both; silently dropping one would mislead.
    with pytest.raises(UsageError, match="few-shot examples cannot be combined with label descriptions"):
        build_instruction("t", LabelSet(("person",), ("a human",)), "en", (Example("Ada.", "person: Ada"),))


def test_descriptions_must_match_names() -> None:
    with pytest.raises(ValueError):
        LabelSet(("person", "location"), ("a human",))


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        (["person", "location"], "en"),
        (["人名", "地名"], "zh"),
        (["作品名->游戏作品"], "zh"),
        (["人名", "person"], "zh"),  # exactly half -> zh
        (["person", "人名"], "zh"),
        (["人名", "person", "location"], "en"),  # 1 of 3 < half
        (["人名", "地名", "person"], "zh"),  # 2 of 3
        (["人名", "地名", "person", "location"], "zh"),  # 2 of 4 = half
        (["人名", "person", "location", "date"], "en"),  # 1 of 4
        (["PER的", "ORG", "LOC"], "en"),  # Han inside one name only: 1 of 3
        (["PER的", "ORG的", "LOC"], "zh"),  # a name counts if it contains any Han character
        (["ひと", "ばしょ"], "en"),  # kana only: not Han
        (["ＰＥＲ", "ＬＯＣ"], "en"),  # full-width Latin: not Han
        (["Person", "Organisation"], "en"),
        ([], "en"),
    ],
)
def test_detect_lang(labels: list[str], expected: str) -> None:
    assert detect_lang(labels) == expected
    assert detect_lang(tuple(labels)) == expected


def test_prompt_id_is_a_public_nonempty_string() -> None:
    assert isinstance(PROMPT_ID, str) and PROMPT_ID.strip() == PROMPT_ID != ""
    assert b2ner_cli.PROMPT_ID == PROMPT_ID


def test_labels_ending_in_a_digit_are_kept_as_written() -> None:
    from b2ner_cli.answers import parse_answer

    labels = LabelSet(("grade 2", "level 10"), ("a school year", "a floor"))
    got = build_instruction("t", labels, "en")
    # spec section 2: labels_str joined by ", "; descriptions as `label means "desc"` joined by "; "
    assert '\nLabel Set: grade 2, level 10 \nLabel Description: grade 2 means "a school year"; level 10 means ' in got
    parsed = parse_answer(" grade 2: Ann; level 10: roof", labels.names)
    assert parsed.pairs == [("grade 2", "Ann"), ("level 10", "roof")]
