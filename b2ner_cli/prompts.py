"""B2NER instructions: the exact published templates, built without a second ``format`` pass.

model input = BOS + instruction, where instruction = template filled in + answer prefix.
The BOS itself is added by the engine from the tokenizer (exactly one), never as text here.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from .errors import UsageError

PROMPT_ID = "b2ner.prompt.v1"

Lang = Literal["en", "zh"]
LANGS: tuple[Lang, ...] = ("en", "zh")

_EN_HEAD = (
    "Given the label set of entities, please recognize all the entities in the text. "
    'The answer format should be "entity label: entity; entity label: entity". '
)
_ZH_HEAD = '给定实体的标签范围，请识别文本中属于这些标签的所有实体。答案格式为 "实体标签: 实体; 实体标签: 实体"。'

ZERO_SHOT = {
    "en": _EN_HEAD + "\nLabel Set: {labels_str} \n\nText: {text} \n",
    "zh": _ZH_HEAD + "\n标签范围: {labels_str}\n\n文本: {text} \n",
}
WITH_DESCRIPTIONS = {
    "en": (
        "Given the label set of entities and their descriptions, please recognize all the entities in "
        'the text. The answer format should be "entity label: entity; entity label: entity". '
        "\nLabel Set: {labels_str} \nLabel Description: {label_descriptions_str} \n\nText: {text} \n"
    ),
    "zh": (
        "给定实体的标签范围以及对每个标签的描述，请识别文本中属于这些标签的所有实体。"
        '答案格式为 "实体标签: 实体; 实体标签: 实体"。'
        "\n标签范围: {labels_str}\n标签描述: {label_descriptions_str}\n\n文本: {text} \n"
    ),
}
FEW_SHOT = {
    "en": _EN_HEAD + "Below are some examples. \nLabel Set: {labels_str} \n\n@@examples@@Text: {text} \n",
    "zh": _ZH_HEAD + "下面有一些例子。 \n标签范围: {labels_str} \n\n@@examples@@文本: {text} \n",
}
ANSWER_PREFIX = {"en": "Answer:", "zh": "答案:"}
TEXT_PREFIX = {"en": "Text: ", "zh": "文本: "}
DESCRIPTION_VERB = {"en": "means", "zh": "是指"}

_PLACEHOLDER = re.compile(r"\{(labels_str|label_descriptions_str|text)\}|@@examples@@")


@dataclass(frozen=True)
class LabelSet:
    """The labels of one prompt, in the user's order, with optional descriptions."""

    names: tuple[str, ...]
    descriptions: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.descriptions is not None and len(self.descriptions) != len(self.names):
            raise ValueError("descriptions must match names one to one")


@dataclass(frozen=True)
class Example:
    """A few-shot example: a text and its answer in B2NER grammar (``None`` for no entity)."""

    text: str
    answer: str


def is_han(char: str) -> bool:
    """True for a CJK ideograph (the characters that make a label name Chinese)."""
    return "CJK UNIFIED IDEOGRAPH" in unicodedata.name(char, "") or "CJK COMPATIBILITY IDEOGRAPH" in (
        unicodedata.name(char, "")
    )


def has_han(text: str) -> bool:
    """True when the text contains a CJK ideograph."""
    return any(is_han(c) for c in text)


def detect_lang(labels: Sequence[str]) -> Lang:
    """``zh`` when the label names are Chinese (at least half contain Han characters), else ``en``.

    Upstream chose the template by label set, not by text: English for every non-Chinese set.
    """
    chinese = sum(1 for name in labels if has_han(name))
    return "zh" if labels and 2 * chinese >= len(labels) else "en"


def labels_str(labels: LabelSet) -> str:
    return ", ".join(labels.names)


def label_descriptions_str(labels: LabelSet, lang: Lang) -> str:
    if labels.descriptions is None:
        raise ValueError("this label set has no descriptions")
    verb = DESCRIPTION_VERB[lang]
    return "; ".join(f'{name} {verb} "{desc}"' for name, desc in zip(labels.names, labels.descriptions, strict=True))


def format_example(example: Example, lang: Lang) -> str:
    """One few-shot block: ``Text: <text> \\nAnswer: <answer> \\n\\n`` (the target has a leading space)."""
    target = " " + (example.answer.strip() or "None")
    return f"{TEXT_PREFIX[lang]}{example.text} \n{ANSWER_PREFIX[lang]}{target} \n\n"


def _fill(template: str, values: dict[str, str]) -> str:
    # One pass over the template only: user text is inserted verbatim and never re-parsed,
    # so braces or "@@examples@@" inside it stay as they are.
    return _PLACEHOLDER.sub(lambda m: values[m.group(1) or "examples"], template)


def check_prompt_kind(labels: LabelSet, examples: Sequence[Example], where: str = "") -> None:
    """Few-shot examples and label descriptions have no published template together: refuse the pair."""
    if examples and labels.descriptions is not None:
        raise UsageError(
            f"{where + ': ' if where else ''}few-shot examples cannot be combined with label descriptions.",
            "Use either --examples or labels with descriptions.",
        )


def build_instruction(
    text: str,
    labels: LabelSet,
    lang: Lang,
    examples: Sequence[Example] = (),
) -> str:
    """The exact instruction the model receives after its BOS, ending with the answer prefix."""
    check_prompt_kind(labels, examples)
    values = {"labels_str": labels_str(labels), "text": text}
    if examples:
        template = FEW_SHOT[lang]
        values["examples"] = "".join(format_example(e, lang) for e in examples)
    elif labels.descriptions is not None:
        template = WITH_DESCRIPTIONS[lang]
        values["label_descriptions_str"] = label_descriptions_str(labels, lang)
    else:
        template = ZERO_SHOT[lang]
    return _fill(template, values) + ANSWER_PREFIX[lang]
