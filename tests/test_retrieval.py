"""kNN retrieval: the store (``b2ner index``), its fingerprint check, and nearest-neighbour demonstrations in the
LLM prompt (``b2ner extract --demos``), on the session's tiny trained tagger."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from helpers import cli, read_jsonl, write_jsonl
from trained import Trained

from b2ner_cli.engine.base import Generation
from b2ner_cli.errors import InputError, UsageError
from b2ner_cli.retrieval.store import open_store, sentence_vectors, tagger_fingerprint

# Three sentences of the tagger's synthetic task (its tokenizer knows their words); answers worked out by hand.
ROWS = [
    {"id": "a", "text": "Yesterday David Lee flew to Tokyo .",
     "entities": [{"start": 10, "end": 19, "label": "person"}, {"start": 28, "end": 33, "label": "location"}]},
    {"id": "b", "text": "李明住在北京。",
     "entities": [{"start": 0, "end": 2, "label": "person"}, {"start": 4, "end": 6, "label": "location"}]},
    {"id": "c", "text": "In Rome , Emma met friends .", "entities": []},
]  # fmt: skip
ANSWERS = ["person: David Lee; location: Tokyo", "person: 李明; location: 北京", "None"]


@pytest.fixture(scope="module")
def store(tagger: Trained, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("store")
    train = write_jsonl(root / "train.jsonl", ROWS)
    out = root / "store"
    result = cli("index", str(train), "-m", str(tagger.path), "-o", str(out), "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert {k: summary[k] for k in ("store", "sentences", "dimension", "tagger", "tuned")} == {
        "store": str(out), "sentences": 3, "dimension": 32, "tagger": str(tagger.path), "tuned": None}
    return out


def test_store_files_hold_normalised_vectors_and_gold_answers(store: Path, tagger: Trained) -> None:
    meta = json.loads((store / "store.json").read_text())
    assert (meta["format"], meta["format_version"], meta["sentences"], meta["dimension"]) == ("b2ner-store", 1, 3, 32)
    assert meta["tagger_fingerprint"] == tagger_fingerprint(tagger.path)
    assert set(meta["defaults"]) == {"k", "lambda", "temperature"}
    assert [(r["text"], r["answer"]) for r in read_jsonl(store / "sentences.jsonl")] == [
        (row["text"], answer) for row, answer in zip(ROWS, ANSWERS, strict=True)
    ]
    opened = open_store(store)
    assert opened.vectors.dtype.is_floating_point and tuple(opened.vectors.shape) == (3, 32)
    assert opened.vectors.norm(dim=-1).sub(1).abs().max() < 1e-5
    assert not list(store.parent.glob(".store.*")), "the build directory is renamed into place"


def test_a_near_copy_retrieves_its_training_sentence_first(store: Path) -> None:
    from b2ner_cli.retrieval.demos import Demonstrations, DemoSpec

    demos = Demonstrations.load(DemoSpec(str(store), shots=3), device="cpu")
    queries = ["Yesterday David Lee flew to Tokyo", "李明住在北京", "In Rome , Emma met friends"]
    scores, indices = demos.store.search(sentence_vectors(demos.tagger, queries), 2)
    assert indices[:, 0].tolist() == [0, 1, 2]
    assert (scores[:, 0] >= scores[:, 1]).all() and (scores[:, 0] > 0.9).all()
    examples = demos.examples(["Yesterday David Lee flew to Tokyo"])[0]
    assert len(examples) == 3 and (examples[0].text, examples[0].answer) == (ROWS[0]["text"], ANSWERS[0])


def test_a_store_is_refused_by_another_tagger(store: Path, tagger: Trained, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    other = tmp_path / "other-tagger"
    shutil.copytree(tagger.path, other)
    weights = load_file(str(other / "head.safetensors"))
    first = next(iter(weights))
    weights[first] = weights[first] + 1.0
    save_file(weights, str(other / "head.safetensors"))
    mine, theirs = tagger_fingerprint(tagger.path), tagger_fingerprint(other)
    assert mine != theirs
    with pytest.raises(UsageError) as caught:
        open_store(store, tagger=other)
    assert mine[:12] in caught.value.message and theirs[:12] in caught.value.message
    assert "\n" not in caught.value.message


def test_a_store_whose_tagger_changed_is_refused_by_extract(tagger: Trained, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    mine = tmp_path / "tagger"
    shutil.copytree(tagger.path, mine)
    train = write_jsonl(tmp_path / "train.jsonl", ROWS)
    assert cli("index", str(train), "-m", str(mine), "-o", str(tmp_path / "store")).exit_code == 0
    weights = load_file(str(mine / "head.safetensors"))
    save_file({k: v * 2 for k, v in weights.items()}, str(mine / "head.safetensors"))
    query = tmp_path / "q.txt"
    query.write_text("Yesterday David Lee flew to Tokyo\n")
    result = cli("extract", str(query), "-l", "person,location", "--demos", str(tmp_path / "store"), "--dry-run")
    assert result.exit_code == 2
    assert "was made by tagger" in result.stderr and result.stdout == ""


def test_an_empty_training_file_makes_no_store(tagger: Trained, tmp_path: Path) -> None:
    empty = write_jsonl(tmp_path / "train.jsonl", [])
    result = cli("index", str(empty), "-m", str(tagger.path), "-o", str(tmp_path / "store"))
    assert result.exit_code != 0 and "no sentences to index" in result.stderr
    assert not (tmp_path / "store").exists()
    with pytest.raises(InputError):
        open_store(tmp_path / "store")


def test_index_refuses_a_non_empty_output_without_overwrite(store: Path, tagger: Trained) -> None:
    train = store.parent / "train.jsonl"
    result = cli("index", str(train), "-m", str(tagger.path), "-o", str(store))
    assert result.exit_code == 2 and "not empty" in result.stderr and "--overwrite" in result.stderr
    again = cli("index", str(train), "-m", str(tagger.path), "-o", str(store), "--overwrite", "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["sentences"] == 3


def test_dry_run_shows_the_nearest_sentence_as_a_demonstration(store: Path, tmp_path: Path) -> None:
    query = tmp_path / "q.txt"
    query.write_text("李明住在北京\n")
    result = cli("extract", str(query), "-l", "人名,地名", "--demos", str(store), "--shots", "1", "--dry-run")
    assert result.exit_code == 0, result.output
    prompt = json.loads(result.stdout)["prompt"]
    # one shot: the nearest training sentence with its gold answer, then the input
    assert prompt.endswith("标签范围: 人名, 地名 \n\n文本: 李明住在北京。 \n答案: person: 李明; location: 北京 \n\n"
                           "文本: 李明住在北京 \n答案:")  # fmt: skip
    assert "Yesterday" not in prompt and "Emma" not in prompt


def test_demos_are_refused_with_examples_or_descriptions(store: Path, tmp_path: Path) -> None:
    query = tmp_path / "q.txt"
    query.write_text("Yesterday David Lee flew to Tokyo\n")
    examples = write_jsonl(tmp_path / "ex.jsonl", [{"text": "Ada met Bob .", "answer": "person: Ada"}])
    both = cli("extract", str(query), "-l", "person", "--demos", str(store), "--examples", str(examples), "--dry-run")
    assert both.exit_code == 2 and "--demos and --examples" in both.stderr
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps({"person": "a human being"}))
    described = cli("extract", str(query), "--labels-file", str(labels), "--demos", str(store), "--dry-run")
    assert described.exit_code == 2 and "label descriptions" in described.stderr


class RecordingGenerator:
    """Answers None to everything and keeps every instruction it was given (one token per word)."""

    max_new_tokens = 16

    def __init__(self) -> None:
        self.instructions: list[str] = []

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def encode(self, instruction: str) -> list[int]:
        self.instructions.append(instruction)
        return [1] * (len(instruction.split()) + 1)

    def generate(self, batch: list[list[int]]) -> list[Generation]:
        return [Generation(" None", 1, True) for _ in batch]

    def describe(self) -> dict[str, object]:
        return {}


def test_an_llm_run_prompts_each_document_with_its_own_demonstrations(store: Path, tmp_path: Path) -> None:
    from b2ner_cli.models.spec import ModelSpec
    from b2ner_cli.pipeline import LLMRecognizer
    from b2ner_cli.prompts import LabelSet
    from b2ner_cli.retrieval.demos import DemoSpec
    from b2ner_cli.runs.run import OutputSpec, RunSpec, execute
    from b2ner_cli.runs.settings import Task

    query = tmp_path / "q.txt"
    query.write_text("Yesterday David Lee flew to Tokyo\nIn Rome , Emma met friends\n")
    out = tmp_path / "out.jsonl"
    spec = RunSpec(ModelSpec("b2ner-7b", device="cpu"), Task.of(LabelSet(("person", "location"))), (str(query),),
                   output=OutputSpec(str(out)), demos=DemoSpec(str(store), 1))  # fmt: skip
    generator = RecordingGenerator()
    result = execute(spec, recognizer=LLMRecognizer(generator))  # type: ignore[arg-type]
    assert result.status == "complete" and len(read_jsonl(out)) == 2
    assert result.manifest["demos"] == {"store": str(store), "shots": 1}
    first, second = generator.instructions
    assert f"Text: {ROWS[0]['text']} \nAnswer: {ANSWERS[0]} \n\nText: Yesterday David Lee flew to Tokyo \n" in first
    assert f"Text: {ROWS[2]['text']} \nAnswer: None \n\nText: In Rome , Emma met friends \n" in second
    assert json.loads((tmp_path / "out.jsonl.meta.json").read_text())["demos"]["shots"] == 1


def test_eval_with_demos_prompts_each_gold_text_with_its_neighbours(
    store: Path, tiny, tagger: Trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from b2ner_cli.pipeline import LLMRecognizer

    seen: list[tuple[str, tuple[str, ...]]] = []
    real = LLMRecognizer.recognize

    def spying(self, window, task, stats, progress=None):  # type: ignore[no-untyped-def]
        seen.extend((d.text, tuple(e.text for e in d.examples or ())) for d in window)
        return real(self, window, task, stats, progress)

    monkeypatch.setattr(LLMRecognizer, "recognize", spying)
    gold = write_jsonl(tmp_path / "gold.jsonl", [
        {"id": "q", "text": "李明住在北京", "entities": [{"start": 0, "end": 2, "label": "person"}]}])  # fmt: skip
    out = tmp_path / "pred.jsonl"
    result = cli("eval", str(gold), "-m", str(tiny.base), "--adapter", str(tiny.adapter), "--demos", str(store),
                 "--shots", "1", "--predictions-out", str(out), "--json", "-q")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert seen == [("李明住在北京", (ROWS[1]["text"],))]  # its nearest training sentence, as the one shot
    assert json.loads(Path(f"{out}.meta.json").read_text())["demos"] == {"store": str(store), "shots": 1}
    refused = cli("eval", str(gold), "-m", str(tagger.path), "--demos", str(store))
    assert refused.exit_code == 2 and "not an LLM" in refused.stderr


def test_data_parallel_ranks_prompt_with_the_same_demonstrations(store: Path, tiny, tmp_path: Path) -> None:
    """Under --data-parallel each rank retrieves its documents' demonstrations: the tiny LLM's raw answers are those
    of one process, and they depend on the demonstrations (without them they differ)."""
    query = tmp_path / "q.txt"
    query.write_text("Yesterday David Lee flew to Tokyo\nIn Rome , Emma met friends\n李明住在北京\n", encoding="utf-8")
    common = ["extract", str(query), "-l", "person,location", "-m", str(tiny.base), "--adapter", str(tiny.adapter),
              "--device", "cpu", "--keep-raw", "-b", "1", "--window", "1", "--max-new-tokens", "12", "-q"]  # fmt: skip
    single = cli(*common, "--demos", str(store), "--shots", "1")
    parallel = cli(*common, "--demos", str(store), "--shots", "1", "--data-parallel", "2")
    without = cli(*common)
    assert single.exit_code == parallel.exit_code == without.exit_code == 0, parallel.output
    assert parallel.stdout == single.stdout
    raw = [json.loads(line)["raw"] for line in single.stdout.splitlines()]
    assert raw != [json.loads(line)["raw"] for line in without.stdout.splitlines()]
