"""spaCy: the "b2ner" pipeline component on blank pipelines (no spaCy model is downloaded) and extract --format spacy.

Offsets worked out by hand. "Ada lives in Paris ." tokenizes (spaCy English) as Ada|lives|in|Paris|. : Ada is
characters 0-3 and token 0, Paris characters 13-18 and token 3.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

spacy = pytest.importorskip("spacy")

from conftest import EN_LABELS, TAUGHT, TinyModels  # noqa: E402
from helpers import cli, read_jsonl  # noqa: E402
from spacy.tokens import Doc, DocBin  # noqa: E402
from trained import Trained  # noqa: E402

from b2ner_cli.errors import UsageError  # noqa: E402
from b2ner_cli.integrations.spacy import DocBinSink, text_language  # noqa: E402
from b2ner_cli.io.readers import Document  # noqa: E402
from b2ner_cli.models.spec import ModelSpec  # noqa: E402
from b2ner_cli.prompts import LabelSet  # noqa: E402
from b2ner_cli.records import Entity, Record, Unmatched  # noqa: E402
from b2ner_cli.runs.recognizer import ProgressHook, register_recognizer, unregister_recognizer  # noqa: E402
from b2ner_cli.runs.run import OutputSpec, RunSpec, Stopped, execute  # noqa: E402
from b2ner_cli.runs.settings import ExtractSettings, RunStats, Task  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def ents(doc: Doc) -> list[tuple[int, int, str, str]]:
    return [(e.start_char, e.end_char, e.label_, e.text) for e in doc.ents]


def grouped(doc: Doc, key: str = "b2ner") -> list[tuple[int, int, str, str]]:
    return [(s.start_char, s.end_char, s.label_, s.text) for s in doc.spans[key]]


def as_jsonl(doc: Doc) -> list[dict[str, object]]:
    """``doc._.b2ner_entities`` without the token range: the entities as ``b2ner extract`` writes them."""
    return [{k: v for k, v in e.items() if k not in ("token_start", "token_end")} for e in doc._.b2ner_entities]


def pipeline(**config: object) -> spacy.language.Language:
    nlp = spacy.blank("en")
    nlp.add_pipe("b2ner", config=config)
    return nlp


# -- the component on the fake recognizer ----------------------------------------------------------------------------


def test_entities_from_character_offsets_with_their_scores(fake_model: str) -> None:
    nlp = pipeline(model=fake_model, labels=["person", "location"])
    doc = nlp("Ada lives in Paris .")
    assert ents(doc) == [(0, 3, "person", "Ada"), (13, 18, "location", "Paris")]
    assert [(e.start, e.end) for e in doc.ents] == [(0, 1), (3, 4)]
    assert [(e._.b2ner_score, e._.b2ner_source, e._.b2ner_uncertainty) for e in doc.ents] == [
        (0.9, "fake", None), (0.75, "fake", None)]  # fmt: skip
    assert grouped(doc) == ents(doc)
    assert [t.ent_iob_ for t in doc] == ["B", "O", "O", "B", "O"]
    assert doc._.b2ner_entities == [
        {"start": 0, "end": 3, "text": "Ada", "label": "person", "score": 0.9, "source": "fake", "token_start": 0,
         "token_end": 1},
        {"start": 13, "end": 18, "text": "Paris", "label": "location", "score": 0.75, "source": "fake",
         "token_start": 3, "token_end": 4},
    ]  # fmt: skip
    assert doc._.b2ner_unmatched == []
    assert nlp.pipe_labels == {"b2ner": ["person", "location"]}
    assert nlp("Nothing here .").ents == ()


def test_the_component_needs_labels_when_the_model_brings_none(fake_model: str) -> None:
    with pytest.raises(UsageError, match="needs labels"):
        pipeline(model=fake_model)


def test_a_bad_alignment_mode_is_refused_by_the_config(fake_model: str) -> None:
    with pytest.raises(Exception, match="alignment_mode"):
        pipeline(model=fake_model, labels=["person"], alignment_mode="loose")


# "Adam met Ada ." is Adam|met|Ada|. ; the fake tags "Ada" at every occurrence, also characters 0-3 inside "Adam".
@pytest.mark.parametrize(
    ("mode", "expected", "first_tokens"),
    [
        ("expand", [(0, 4, "person", "Adam"), (9, 12, "person", "Ada")], (0, 1)),
        ("contract", [(9, 12, "person", "Ada")], (None, None)),
        ("strict", [(9, 12, "person", "Ada")], (None, None)),
    ],
)
def test_alignment_modes_on_an_entity_inside_a_token(
    fake_model: str, mode: str, expected: list[tuple[int, int, str, str]], first_tokens: tuple[int | None, ...]
) -> None:
    doc = pipeline(model=fake_model, labels=["person"], alignment_mode=mode)("Adam met Ada .")
    assert ents(doc) == expected and grouped(doc) == expected
    assert all(e._.b2ner_score == 0.9 for e in doc.ents)
    first = doc._.b2ner_entities[0]  # b2ner's own offsets are kept whatever the alignment
    assert (first["start"], first["end"], first["text"]) == (0, 3, "Ada")
    assert (first["token_start"], first["token_end"]) == first_tokens


def test_pipe_sends_each_batch_as_one_window(fake_model: str) -> None:
    nlp = pipeline(model=fake_model, labels=["person", "location"])
    texts = ["Ada .", "", "Paris and Ada .", "Nothing .", "Acme ."]
    docs = list(nlp.pipe(texts, batch_size=4))
    assert [d.text for d in docs] == texts
    assert [ents(d) for d in docs] == [[(0, 3, "person", "Ada")], [], [(0, 5, "location", "Paris"),
                                       (10, 13, "person", "Ada")], [], []]  # fmt: skip
    assert docs[1]._.b2ner_entities == [] and docs[1]._.b2ner_unmatched == []
    # batches of 4 and 1 docs; the blank doc never reaches the model: 2 windows for 5 docs
    assert nlp.get_pipe("b2ner").extractor.recognizer.windows == [3, 1]


def test_the_pipeline_saves_and_loads_by_its_config(fake_model: str, tmp_path: Path) -> None:
    pipeline(model=fake_model, labels=["location"], spans_key="ner").to_disk(tmp_path / "pipe")
    doc = spacy.load(tmp_path / "pipe")("Ada lives in Paris .")
    assert ents(doc) == [(13, 18, "location", "Paris")] and grouped(doc, "ner") == ents(doc)


class Scripted:
    """A recognizer answering from a script: text -> (entities, unmatched)."""

    kind = "scripted-spacy"

    def __init__(self, script: dict[str, tuple[list[Entity], list[Unmatched]]]) -> None:
        self.script = script

    def recognize(
        self, window: Sequence[Document], task: Task, stats: RunStats, progress: ProgressHook | None = None
    ) -> Iterator[Record]:
        for document in window:
            found, unmatched = self.script[document.text]
            yield Record(document.id, document.text, found, unmatched, None)

    def labels(self) -> LabelSet | None:
        return LabelSet(("person", "organization", "location"))

    def suggest_batch_tokens(self) -> int | None:
        return None

    def describe(self) -> dict[str, object]:
        return {"recognizer": self.kind}


# "The Bank of Paris hired Ada ." is The|Bank|of|Paris|hired|Ada|. : Bank of Paris = characters 4-17 (tokens 1-4),
# Paris = 12-17 (token 3), Ada = 24-27 (token 5).
BANK = "The Bank of Paris hired Ada ."
NESTED = [
    Entity(4, 17, "Bank of Paris", "organization", score=0.6),
    Entity(12, 17, "Paris", "location", score=0.9),
    Entity(24, 27, "Ada", "person", score=0.8),
    Entity(24, 27, "Ada", "location", score=0.3),
]
UNSCORED = "Bank of Paris ."  # Bank|of|Paris|. : Bank of Paris = 0-13, Paris = 8-13


@pytest.fixture
def scripted() -> Iterator[str]:
    script = {
        BANK: (NESTED, [Unmatched("Babbage", "person")]),
        UNSCORED: ([Entity(0, 13, "Bank of Paris", "organization"), Entity(8, 13, "Paris", "location")], []),
    }
    register_recognizer("scripted-spacy", lambda spec, options: Scripted(script),
                        matches=lambda spec: spec.model == "scripted-spacy")  # fmt: skip
    yield "scripted-spacy"
    unregister_recognizer("scripted-spacy")


def test_overlapping_entities_all_go_to_spans_and_the_best_to_ents(scripted: str) -> None:
    doc = pipeline(model=scripted)(BANK)
    assert grouped(doc) == [(4, 17, "organization", "Bank of Paris"), (12, 17, "location", "Paris"),
                            (24, 27, "person", "Ada"), (24, 27, "location", "Ada")]  # fmt: skip
    # by score: Paris (0.9), then Ada as a person (0.8); Bank of Paris (0.6) and Ada as a location (0.3) overlap them
    assert ents(doc) == [(12, 17, "location", "Paris"), (24, 27, "person", "Ada")]
    # one token range with two labels: each span reads its own entity
    assert [s._.b2ner_score for s in doc.spans["b2ner"]] == [0.6, 0.9, 0.8, 0.3]
    assert doc._.b2ner_unmatched == [{"text": "Babbage", "label": "person"}]
    # without scores the longer span wins
    assert ents(pipeline(model=scripted)(UNSCORED)) == [(0, 13, "organization", "Bank of Paris")]


# -- the component on real models ------------------------------------------------------------------------------------


@pytest.fixture
def one_thread() -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def extracted(tmp_path: Path, texts: list[str], *flags: str) -> list[dict[str, object]]:
    source = tmp_path / "in.txt"
    source.write_text("".join(f"{t}\n" for t in texts), encoding="utf-8")
    result = cli("extract", str(source), *flags, "-q")
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_a_tagger_gives_what_extract_gives(tagger: Trained, tmp_path: Path, one_thread: None) -> None:
    texts = ["Bob Stone lives in Berlin .", "Carol likes Oslo ."]
    docs = list(pipeline(model=str(tagger.path)).pipe(texts))
    assert [ents(d) for d in docs] == [[(0, 9, "person", "Bob Stone"), (19, 25, "location", "Berlin")],
                                       [(0, 5, "person", "Carol"), (12, 16, "location", "Oslo")]]  # fmt: skip
    assert all(isinstance(e._.b2ner_uncertainty, float) for d in docs for e in d.ents)
    records = extracted(tmp_path, texts, "-m", str(tagger.path))
    assert [as_jsonl(d) for d in docs] == [r["entities"] for r in records]


def test_the_b2ner_llm_gives_what_extract_gives(tiny: TinyModels, tmp_path: Path, one_thread: None) -> None:
    # "Barack Obama visited Microsoft in Seattle .": Barack Obama 0-12, Microsoft 21-30, Seattle 34-41;
    # "Paris is big and Paris is old .": Paris 0-5 and 17-22, and the taught answer's Napoleon is not in the text.
    texts = [TAUGHT[0][0], TAUGHT[3][0]]
    nlp = pipeline(model=str(tiny.base), adapter=str(tiny.adapter), labels=list(EN_LABELS), device="cpu")
    docs = list(nlp.pipe(texts))
    assert [ents(d) for d in docs] == [
        [(0, 12, "person", "Barack Obama"), (21, 30, "organization", "Microsoft"), (34, 41, "location", "Seattle")],
        [(0, 5, "location", "Paris"), (17, 22, "location", "Paris")],
    ]
    assert all(0 < e._.b2ner_score <= 1 for d in docs for e in d.ents)
    assert [d._.b2ner_unmatched for d in docs] == [[], [{"text": "Napoleon", "label": "person"}]]
    records = extracted(tmp_path, texts, "-m", str(tiny.base), "--adapter", str(tiny.adapter), "-l",
                        ",".join(EN_LABELS), "--device", "cpu")  # fmt: skip
    assert [as_jsonl(d) for d in docs] == [r["entities"] for r in records]
    assert [d._.b2ner_unmatched for d in docs] == [r["unmatched"] for r in records]


def test_the_cascade_gives_what_extract_gives(
    tagger: Trained, tiny: TinyModels, tmp_path: Path, one_thread: None
) -> None:
    texts = ["Bob Stone lives in Berlin ."]
    options = {"cascade": str(tiny.base), "cascade_adapter": str(tiny.adapter), "threshold": 0.0, "device": "cpu"}
    doc = pipeline(model=str(tagger.path), **options)(texts[0])
    # threshold 0: both tagger entities (uncertain) went to the LLM, which answers something of its own here
    assert doc.ents and {e._.b2ner_source for e in doc.spans["b2ner"]} == {"llm"}
    records = extracted(tmp_path, texts, "-m", str(tagger.path), "--cascade", str(tiny.base), "--cascade-adapter",
                        str(tiny.adapter), "--threshold", "0", "--device", "cpu")  # fmt: skip
    assert as_jsonl(doc) == records[0]["entities"]


# -- registration ---------------------------------------------------------------------------------------------------


def test_the_entry_point_registers_the_factory_without_an_import(tmp_path: Path) -> None:
    """spaCy loads the pyproject's ``spacy_factories`` entry point (here from a stand-in dist-info) when a pipeline
    is made; that imports the module, but not transformers (spaCy's thinc imports torch when it is installed)."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    points = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]["spacy_factories"]
    assert points == {"b2ner": "b2ner_cli.integrations.spacy:make_b2ner"}
    info = tmp_path / "b2ner_entry_point_check-0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: b2ner-entry-point-check\nVersion: 0\n")
    (info / "entry_points.txt").write_text("[spacy_factories]\n" + "".join(f"{k} = {v}\n" for k, v in points.items()))
    code = (
        "import sys, spacy\nassert 'b2ner_cli.integrations.spacy' not in sys.modules\nnlp = spacy.blank('en')\n"
        "print(nlp.has_factory('b2ner'), 'b2ner_cli.integrations.spacy' in sys.modules, 'transformers' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path,
                          env={"PYTHONPATH": f"{tmp_path}:{ROOT}", "PATH": "/usr/bin:/bin"})  # fmt: skip
    assert done.stdout.split() == ["True", "True", "False"]


# -- extract --format spacy -----------------------------------------------------------------------------------------


def read_docbin(path: Path) -> list[Doc]:
    return list(DocBin().from_disk(path).get_docs(spacy.blank("en").vocab))


def test_text_language() -> None:
    assert text_language("Ada lives in Paris .") == "en"
    assert text_language("李明在Microsoft工作，2024年去了Paris。") == "zh"  # 8 Han characters, 3 other words
    assert text_language("Li Ming (李明) works at Microsoft in Beijing .") == "en"  # 2 Han characters, 7 words


def test_extract_format_spacy_matches_the_jsonl(fake_model: str, tmp_path: Path) -> None:
    source = tmp_path / "in.txt"
    source.write_text("Ada lives in Paris .\nNothing here .\nAda住在Paris。\n", encoding="utf-8")
    out = tmp_path / "out.spacy"
    run = ["extract", str(source), "-m", "fake", "-l", "person,location"]
    result = cli(*run, "--format", "spacy", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert result.stdout == "" and f"-> {out}" in result.stderr
    assert cli(*run, "-o", str(tmp_path / "out.jsonl"), "-q").exit_code == 0
    jsonl = read_jsonl(tmp_path / "out.jsonl")
    docs = read_docbin(out)
    assert [(d._.b2ner_id, d.text) for d in docs] == [(r["id"], r["text"]) for r in jsonl]
    assert [as_jsonl(d) for d in docs] == [r["entities"] for r in jsonl]
    assert [list(d._.b2ner_unmatched) for d in docs] == [r["unmatched"] for r in jsonl]
    assert [ents(d) for d in docs] == [[(0, 3, "person", "Ada"), (13, 18, "location", "Paris")], [],
                                       [(0, 3, "person", "Ada"), (5, 10, "location", "Paris")]]  # fmt: skip
    assert [e._.b2ner_score for e in docs[0].ents] == [0.9, 0.75]
    # the Chinese line is split into characters (A|d|a|住|在|P|a|r|i|s|。): Ada = tokens 0-3, Paris = 5-10
    assert len(docs[2]) == 11 and [(e.start, e.end) for e in docs[2].ents] == [(0, 3), (5, 10)]
    assert [(e.start, e.end) for e in docs[0].ents] == [(0, 1), (3, 4)]
    meta = json.loads((tmp_path / "out.spacy.meta.json").read_text(encoding="utf-8"))
    assert meta["status"] == "complete" and meta["records_written"] == 3


def test_extract_format_spacy_needs_a_file_and_spacy(fake_model: str, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    source = tmp_path / "in.txt"
    source.write_text("Ada .\n", encoding="utf-8")
    run = ["extract", str(source), "-m", "fake", "-l", "person", "--format", "spacy"]
    for where in ([], ["-o", "-"]):
        result = cli(*run, *where)
        assert result.exit_code == 2 and result.stdout == ""
        assert result.stderr == ("Error: --format spacy writes a binary spaCy DocBin file, not to stdout.\n"
                                 "Hint: Add -o FILE.spacy.\n")  # fmt: skip
    monkeypatch.setitem(sys.modules, "spacy", None)  # as if spaCy were not installed
    result = cli(*run, "-o", str(tmp_path / "out.spacy"))
    assert result.exit_code == 2
    assert result.stderr == ("Error: --format spacy needs spacy, which is not installed.\n"
                             "Hint: pip install 'b2ner[spacy]'\n")  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt"]
    assert "'b2ner[spacy]'" in cli("extract", "--help").stdout  # the brackets survive Rich's markup


def test_an_interrupted_run_keeps_its_docs_beside_an_existing_file(fake_model: str, tmp_path: Path) -> None:
    out = tmp_path / "out.spacy"
    out.write_bytes(b"earlier")

    def two_then_stop() -> Iterator[Document]:
        yield Document("a", "Ada lives in Paris .")
        yield Document("b", "Nothing here .")
        raise KeyboardInterrupt

    task = Task.of(LabelSet(("person", "location")), settings=ExtractSettings(window=1))
    spec = RunSpec(model=ModelSpec("fake"), task=task, output=OutputSpec(str(out)))
    events: list[object] = []
    with pytest.raises(KeyboardInterrupt):
        execute(spec, documents=two_then_stop(), sink=DocBinSink(out), events=events.append)
    assert out.read_bytes() == b"earlier"
    partial = tmp_path / "out.spacy.partial"
    docs = read_docbin(partial)
    assert [d._.b2ner_id for d in docs] == ["a", "b"] and ents(docs[0]) == [(0, 3, "person", "Ada"),
                                                                           (13, 18, "location", "Paris")]  # fmt: skip
    assert [e for e in events if isinstance(e, Stopped)] == [Stopped(partial, 2)]
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
