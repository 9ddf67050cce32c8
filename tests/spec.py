"""Literal values from the spec (b2ner-format.md section 2), shared by the unit tests."""

# The label set of the spec's Chinese literal example, in its order.
SPEC_ZH_LABELS = (
    "人名",
    "作品名->文字作品",
    "作品名->游戏作品",
    "作品名->影像作品",
    "组织机构名->政府机构",
    "组织机构名->公司",
    "组织机构名->其它",
    "地名",
)
