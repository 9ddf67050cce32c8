"""The LinkNER cascade: routing by threshold, the span and sentence merges, the lazy LLM, the meta block, the sweep,
and the refusals. Scripted recognizers (registered through the seam) give exact uncertainties; the trained tagger
and the taught tiny LLM run the real paths."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import torch
from conftest import EN_LABELS, TAUGHT
from helpers import cli, read_jsonl, write_jsonl

from b2ner_cli.cascade import CascadeSpec, merge, parse_thresholds
from b2ner_cli.cascade.sweep import ThresholdScore, choose
from b2ner_cli.errors import UsageError
from b2ner_cli.io.readers import Document
from b2ner_cli.models.spec import ModelSpec
from b2ner_cli.prompts import LabelSet
from b2ner_cli.records import Entity, Record
from b2ner_cli.runs.recognizer import ProgressHook, register_recognizer, unregister_recognizer
from b2ner_cli.runs.settings import RunStats, Task

# "Bob Stone lives in Berlin ." and "Carol likes Oslo ." are training sentences the session tagger has learnt.
BOB, CAROL = "Bob Stone lives in Berlin .", "Carol likes Oslo ."
TAGGED = [[(0, 9, "Bob Stone", "person"), (19, 25, "Berlin", "location")], [(0, 5, "Carol", "person"),
          (12, 16, "Oslo", "location")]]  # fmt: skip
# The taught sentence: "Barack Obama" 0-12, "visited" 13-20, "Microsoft" 21-30, "Microsoft in" 21-33, "Seattle" 34-41.
OBAMA = TAUGHT[0][0]
assert OBAMA[21:30] == "Microsoft" and OBAMA[13:20] == "visited" and OBAMA[34:41] == "Seattle"


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class Scripted:
    """A recognizer answering from a script: text -> [(start, end, label, uncertainty)] (uncertainty None: an LLM)."""

    def __init__(self, kind: str, script: dict[str, list[tuple[int, int, str, float | None]]]) -> None:
        self.kind = kind
        self.script = script
        self.documents: list[str] = []

    def recognize(
        self, window: Sequence[Document], task: Task, stats: RunStats, progress: ProgressHook | None = None
    ) -> Iterator[Record]:
        for document in window:
            self.documents.append(document.id)
            found = [Entity(s, e, document.text[s:e], label, score=0.5 if u is None else 1 - u, uncertainty=u,
                            source=self.kind) for s, e, label, u in self.script.get(document.text, [])]  # fmt: skip
            stats.documents += 1
            stats.entities += len(found)
            yield Record(document.id, document.text, found, [], None)

    def labels(self) -> LabelSet | None:
        return LabelSet(list(EN_LABELS)) if self.kind == "scripted" else None

    def suggest_batch_tokens(self) -> int | None:
        return None

    def describe(self) -> dict[str, object]:
        return {"recognizer": self.kind}


OBAMA_TAGGED: list[tuple[int, int, str, float | None]] = [
    (0, 12, "person", 0.1),  # confident: kept
    (13, 20, "person", 0.9),  # uncertain, and the LLM does not return it: dropped
    (21, 33, "location", 0.7),  # uncertain and wrong: the LLM's "organization: Microsoft" (21-30) wins
]


@pytest.fixture
def scripted() -> Iterator[dict[str, Scripted]]:
    """``-m scripted`` (a tagger) and ``--cascade scripted-llm``, registered through the seam; loads are counted."""
    made: dict[str, Scripted] = {}
    loads: list[str] = []

    def factory(kind: str):  # type: ignore[no-untyped-def]
        def load(spec: ModelSpec, options: object) -> Scripted:
            loads.append(kind)
            return made[kind]

        return load

    made["scripted"] = Scripted("scripted", {OBAMA: OBAMA_TAGGED})
    made["scripted-llm"] = Scripted("scripted-llm", {})
    register_recognizer("scripted", factory("scripted"), matches=lambda spec: spec.model == "scripted")
    register_recognizer("scripted-llm", factory("scripted-llm"), matches=lambda spec: spec.model == "scripted-llm")
    made["loads"] = loads  # type: ignore[assignment]
    yield made
    unregister_recognizer("scripted")
    unregister_recognizer("scripted-llm")


def spans(record: dict) -> list[tuple]:
    return [(e["start"], e["end"], e["text"], e["label"], e.get("source")) for e in record["entities"]]


# -- the merge, pure --------------------------------------------------------------------------------------------


def _record(entities: list[tuple[int, int, str, float | None]], text: str = OBAMA) -> Record:
    return Record("0", text, [Entity(s, e, text[s:e], lab, score=0.5, uncertainty=u) for s, e, lab, u in entities],
                  [], None)  # fmt: skip


def test_merge_span_mode_keeps_confident_relabels_confirmed_and_drops_rejected() -> None:
    tagged = _record(OBAMA_TAGGED)
    llm = _record([(0, 12, "person", None), (21, 30, "organization", None), (34, 41, "location", None)])
    got = [(e.start, e.end, e.label, e.source) for e in merge(tagged, llm, 0.4).entities]
    assert got == [(0, 12, "person", "tagger"), (21, 30, "organization", "llm")]
    # T=0.8: only "visited" (0.9) is uncertain; "Microsoft in" stays the tagger's
    got = [(e.start, e.end, e.label, e.source) for e in merge(tagged, llm, 0.8).entities]
    assert got == [(0, 12, "person", "tagger"), (21, 33, "location", "tagger")]
    sentence = [(e.start, e.end, e.label, e.source) for e in merge(tagged, llm, 0.4, "sentence").entities]
    assert sentence == [(0, 12, "person", "llm"), (21, 30, "organization", "llm"), (34, 41, "location", "llm")]
    # not routed (nothing above 0.95): the tagger's record, whatever the LLM said
    assert [e.label for e in merge(tagged, llm, 0.95, "sentence").entities] == ["person", "person", "location"]


def test_parse_thresholds() -> None:
    assert parse_thresholds("0:1:0.25") == (0.0, 0.25, 0.5, 0.75, 1.0)
    assert parse_thresholds("0.5,0,1") == (0.0, 0.5, 1.0)
    assert len(parse_thresholds("0:1:0.1")) == 11
    for bad in ("0:1", "a,b", "0:2:0.5", "1.5", "0:1:0"):
        with pytest.raises(UsageError):
            parse_thresholds(bad)


def test_choose_best_then_cheapest_within_half_a_point() -> None:
    rows = [ThresholdScore(0.2, 0.90, 0.9, 10, 8, 20, 10), ThresholdScore(0.5, 0.896, 0.9, 10, 3, 20, 4),
            ThresholdScore(0.6, 0.90, 0.9, 10, 5, 20, 6), ThresholdScore(0.9, 0.80, 0.8, 10, 0, 20, 0)]  # fmt: skip
    best, cheapest = choose(rows)
    assert best.threshold == 0.6  # tie at 90.0 with 0.2: fewer documents routed
    assert cheapest.threshold == 0.5  # 89.6 is within 0.5 points; 80.0 is not


# -- extract --cascade ------------------------------------------------------------------------------------------


def test_taught_llm_corrects_an_uncertain_wrong_entity_and_drops_a_rejected_one(
    scripted: dict[str, Scripted], tiny, tmp_path: Path
) -> None:
    source = tmp_path / "in.txt"
    source.write_text(OBAMA + "\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    llm = ["--cascade", str(tiny.base), "--cascade-adapter", str(tiny.adapter)]
    result = cli("extract", str(source), "-m", "scripted", *llm, "-l", ",".join(EN_LABELS), "-o", str(out))
    assert result.exit_code == 0, result.output
    assert spans(read_jsonl(out)[0]) == [(0, 12, "Barack Obama", "person", "tagger"),
                                         (21, 30, "Microsoft", "organization", "llm")]  # fmt: skip
    meta = json.loads(Path(f"{out}.meta.json").read_text())
    assert meta["cascade"] == {"llm": str(tiny.base), "adapter": str(tiny.adapter), "threshold": 0.4,
                               "uncertainty": "confidence", "mode": "span", "documents": 1, "routed_documents": 1,
                               "spans": 3, "routed_spans": 2}  # fmt: skip
    assert "Cascade: 1 of 1 documents (100.0%) and 2 of 3 entities (66.7%) went to the LLM; tagger " in result.stderr
    record = read_jsonl(out)[0]
    assert all(isinstance(e["score"], float) for e in record["entities"])

    sentence = tmp_path / "sentence.jsonl"
    result = cli("extract", str(source), "-m", "scripted", *llm, "-l", ",".join(EN_LABELS), "--cascade-mode",
                 "sentence", "-o", str(sentence), "-q")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert spans(read_jsonl(sentence)[0]) == [(0, 12, "Barack Obama", "person", "llm"),
                                              (21, 30, "Microsoft", "organization", "llm"),
                                              (34, 41, "Seattle", "location", "llm")]  # fmt: skip


def test_threshold_one_routes_nothing_and_never_loads_the_llm(
    tagger, tiny, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import b2ner_cli.cascade.recognizer as cascade_recognizer

    def no_llm(*_: object) -> None:
        raise AssertionError("the LLM was loaded")

    monkeypatch.setattr(cascade_recognizer, "load_llm", no_llm)
    source = tmp_path / "in.txt"
    source.write_text(f"{BOB}\n{CAROL}\n", encoding="utf-8")
    plain = cli("extract", str(source), "-m", str(tagger.path), "-q")
    assert plain.exit_code == 0, plain.output
    out = tmp_path / "out.jsonl"
    result = cli("extract", str(source), "-m", str(tagger.path), "--cascade", str(tiny.base), "--threshold", "1",
                 "-o", str(out))  # fmt: skip
    assert result.exit_code == 0, result.output
    assert [spans(r) for r in read_jsonl(out)] == [[(*t, "tagger") for t in doc] for doc in TAGGED]
    assert out.read_text() == plain.stdout  # untouched: same entities, scores and uncertainties
    meta = json.loads(Path(f"{out}.meta.json").read_text())
    assert meta["cascade"] == {"llm": str(tiny.base), "adapter": None, "threshold": 1.0, "uncertainty": "confidence",
                               "mode": "span", "documents": 2, "routed_documents": 0, "spans": 4,
                               "routed_spans": 0}  # fmt: skip
    assert "Cascade: 0 of 2 documents (0.0%) and 0 of 4 entities (0.0%) went to the LLM" in result.stderr


def test_threshold_zero_routes_every_entity(tagger, tiny, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import b2ner_cli.cascade.recognizer as cascade_recognizer

    loads: list[str | None] = []
    real = cascade_recognizer.load_llm

    def counting(spec: ModelSpec, options):  # type: ignore[no-untyped-def]
        loads.append(spec.model)
        return real(spec, options)

    monkeypatch.setattr(cascade_recognizer, "load_llm", counting)
    source = tmp_path / "in.txt"
    source.write_text(f"{BOB}\n{CAROL}\n", encoding="utf-8")
    plain = [json.loads(x) for x in cli("extract", str(source), "-m", str(tagger.path), "-q").stdout.splitlines()]
    assert all(e["uncertainty"] > 0 for r in plain for e in r["entities"])  # so T=0 routes each of them
    out = tmp_path / "out.jsonl"
    result = cli("extract", str(source), "-m", str(tagger.path), "--cascade", str(tiny.base), "--cascade-adapter",
                 str(tiny.adapter), "--threshold", "0", "-o", str(out), "-q")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert loads == [str(tiny.base)]
    meta = json.loads(Path(f"{out}.meta.json").read_text())
    assert {k: meta["cascade"][k] for k in ("documents", "routed_documents", "spans", "routed_spans")} == {
        "documents": 2, "routed_documents": 2, "spans": 4, "routed_spans": 4}  # fmt: skip
    assert all(e["source"] == "llm" for r in read_jsonl(out) for e in r["entities"])  # no tagger entity survives
    assert meta["llm"]["recognizer"] == "llm"


def test_python_api_cascade(scripted: dict[str, Scripted]) -> None:
    from b2ner_cli import Extractor

    scripted["scripted-llm"].script = {OBAMA: [(21, 30, "organization", None)]}
    ner = Extractor.load("scripted", cascade="scripted-llm", threshold=0.4)
    record = ner.extract([OBAMA, "Nothing here ."])
    got = [(e.start, e.end, e.label, e.source) for e in record[0].entities]
    assert got == [(0, 12, "person", "tagger"), (21, 30, "organization", "llm")]
    assert record[1].entities == []
    assert scripted["scripted-llm"].documents == ["0"]  # only the routed document went to the LLM
    assert scripted["loads"] == ["scripted", "scripted-llm"]  # type: ignore[comparison-overlap]


# -- eval --sweep-threshold -------------------------------------------------------------------------------------

# a: "Ada met Bob ." Ada 0-3, Bob 8-11; b: "Paris is big ." Paris 0-5, big 9-12; c: "Cleo sings ." Cleo 0-4.
SWEEP_GOLD = [
    {"id": "a", "text": "Ada met Bob .", "entities": [{"start": 0, "end": 3, "label": "person"},
                                                      {"start": 8, "end": 11, "label": "person"}]},
    {"id": "b", "text": "Paris is big .", "entities": [{"start": 0, "end": 5, "label": "location"}]},
    {"id": "c", "text": "Cleo sings .", "entities": [{"start": 0, "end": 4, "label": "person"}]},
]  # fmt: skip
SWEEP_TAGGER = {
    "Ada met Bob .": [(0, 3, "person", 0.2), (8, 11, "location", 0.6)],
    "Paris is big .": [(0, 5, "location", 0.3), (9, 12, "location", 0.8)],
    "Cleo sings .": [(0, 4, "person", 0.05)],
}
SWEEP_LLM = {
    "Ada met Bob .": [(0, 3, "person", None), (8, 11, "person", None)],
    "Paris is big .": [(0, 5, "location", None)],
    "Cleo sings .": [(0, 4, "location", None)],
}


def test_sweep_numbers_worked_out_by_hand(scripted: dict[str, Scripted], tmp_path: Path) -> None:
    scripted["scripted"].script = SWEEP_TAGGER
    scripted["scripted-llm"].script = SWEEP_LLM
    gold = write_jsonl(tmp_path / "gold.jsonl", SWEEP_GOLD)
    result = cli("eval", str(gold), "-m", "scripted", "--cascade", "scripted-llm", "--sweep-threshold", "0:1:0.25",
                 "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    # T=0: all 5 spans, 3 docs; Cleo becomes location: tp 3 fp 1 fn 1 -> 0.75
    # T=0.25: Bob .6, big .8, Paris .3 (3/5), docs a, b: Bob person, big dropped, Paris kept -> 4/4 -> 1.0
    # T=0.5: Bob, big (2/5), docs a, b -> 1.0;  T=0.75: big (1/5), doc b; Bob stays location: tp 3 fp 1 fn 1 -> 0.75
    # T=1: nothing; tp 3 (Ada, Paris, Cleo), fp 2 (Bob location, big), fn 1 -> P 3/5 R 3/4 -> 2/3
    got = [(t["threshold"], round(t["b2ner_f1"], 4), round(t["strict_f1"], 4), t["routed_documents"],
            t["routed_spans"]) for t in data["thresholds"]]  # fmt: skip
    assert got == [(0.0, 0.75, 0.75, 3, 5), (0.25, 1.0, 1.0, 2, 3), (0.5, 1.0, 1.0, 2, 2), (0.75, 0.75, 0.75, 1, 1),
                   (1.0, 0.6667, 0.6667, 0, 0)]  # fmt: skip
    assert data["thresholds"][2]["routed_document_fraction"] == pytest.approx(2 / 3)
    assert data["thresholds"][2]["routed_span_fraction"] == pytest.approx(2 / 5)
    assert data["best"] == 0.5 and data["cheapest_within_0.5"] == 0.5  # tie with 0.25 -> fewer spans routed
    assert scripted["scripted-llm"].documents == ["a", "b", "c"]  # the LLM ran once per routed document
    assert scripted["scripted"].documents == ["a", "b", "c"]

    table = cli("eval", str(gold), "-m", "scripted", "--cascade", "scripted-llm", "--sweep-threshold", "0.5,1")
    assert table.exit_code == 0, table.output
    assert "Best: threshold 0.5; cheapest within 0.5 F1 points: threshold 0.5." in table.stdout


# -- refusals ---------------------------------------------------------------------------------------------------


def _one_line_error(result, code: int, text: str) -> None:  # type: ignore[no-untyped-def]
    assert result.exit_code == code, result.output
    first = result.stderr.splitlines()[0]
    assert first.startswith("Error: ") and text in first, result.stderr
    assert "Traceback" not in result.stderr


def test_refusals(scripted: dict[str, Scripted], tiny, tmp_path: Path) -> None:
    source = tmp_path / "in.txt"
    source.write_text("Ada met Bob .\n", encoding="utf-8")
    fake_tagger = tmp_path / "fake-tagger"
    fake_tagger.mkdir()
    (fake_tagger / "b2ner_tagger.json").write_text("{}")
    run = ("extract", str(source), "-m", "scripted")
    _one_line_error(cli(*run, "--cascade", str(fake_tagger)), 2, f"--cascade takes an LLM, but `{fake_tagger}`")
    _one_line_error(cli(*run, "--cascade", str(tmp_path / "nowhere")), 1, "is not a directory, a model alias")
    _one_line_error(cli(*run, "--cascade", str(tiny.base), "--threshold", "1.5"), 2, "--threshold must be between")
    _one_line_error(cli(*run, "--cascade", str(tiny.base), "--threshold", "-0.1"), 2, "--threshold must be between")
    _one_line_error(cli("extract", str(source), "--cascade", str(tiny.base)), 2, "--cascade needs a tagger as -m")
    _one_line_error(cli("extract", str(source), "-m", str(tiny.base), "--cascade", str(tiny.base)), 2,
                    f"--cascade needs a tagger as -m (`{tiny.base}` is not a tagger)")  # fmt: skip
    _one_line_error(cli(*run, "--threshold", "0.3"), 2, "--threshold only applies to a cascade")
    _one_line_error(cli(*run, "--cascade-mode", "sentence"), 2, "--cascade-mode only applies to a cascade")
    gold = write_jsonl(tmp_path / "gold.jsonl", SWEEP_GOLD)
    _one_line_error(cli("eval", str(gold), "-m", "scripted", "--sweep-threshold", "0,1"), 2,
                    "--sweep-threshold scores a cascade")  # fmt: skip
    _one_line_error(cli("eval", str(gold), "-m", "scripted", "--cascade", "scripted-llm", "--sweep-threshold", "0:2:1"),
                    2, "--sweep-threshold 0:2:1: thresholds must lie between 0 and 1")  # fmt: skip
    assert scripted["loads"] == []  # type: ignore[comparison-overlap]
    with pytest.raises(UsageError):
        CascadeSpec(ModelSpec("x"), mode="token")
