"""Readers for gold data (our JSONL, B2NERD JSON, CoNLL columns) and predictions (our JSONL, upstream files)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

from ..errors import InputError
from ..io.conll import ConllSentence, conll_sentences, join_tokens, script_language
from ..io.readers import b2nerd_dataset
from ..io.unicode import check_unicode
from ..prompts import detect_lang
from ..records import Entity
from .b2ner_metric import answer_from_pairs
from .records import GoldRecord, PredRecord, UpstreamRecord

GoldFormat = Literal["auto", "jsonl", "b2nerd", "conll"]
#: the language of an upstream row that names none (upstream groups those rows on their own, under "").
UNKNOWN_LANGUAGE = "unknown"
_BOM = "\ufeff"


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path} does not exist.", "Check the path.") from None
    except IsADirectoryError:
        raise InputError(f"{path} is a directory.") from None
    for number, line in enumerate(raw.split(b"\n"), start=1):
        try:
            text = line.decode("utf-8").rstrip("\r")
        except UnicodeDecodeError:
            raise InputError(f"{path}, line {number}: not valid UTF-8.", "Convert the file to UTF-8.") from None
        yield number, text.lstrip(_BOM) if number == 1 else text


def _json_lines(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    for number, line in _lines(path):
        if not line.strip():
            continue
        where = f"{path}, line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{where}: invalid JSON ({exc.msg}).", "Each line must be one JSON object.") from None
        if not isinstance(record, dict):
            raise InputError(f"{where}: expected a JSON object.")
        check_unicode(record, where)
        yield where, record


def is_upstream_predictions(path: Path) -> bool:
    """Whether a JSONL file is upstream's ``predict_eval_predictions.jsonl`` (records with Instance + Prediction)."""
    for _, record in _json_lines(path):
        return "Instance" in record and "Prediction" in record
    return False


def _spans(entities: Any, text: str, where: str, *, check_text: bool = True) -> tuple[Entity, ...]:
    if not isinstance(entities, list):
        raise InputError(f'{where}: "entities" must be a list.')
    spans = []
    for entity in entities:
        if not isinstance(entity, dict):
            raise InputError(f"{where}: each entity must be an object with start, end and label.")
        start, end, label = entity.get("start"), entity.get("end"), entity.get("label")
        if (
            not isinstance(start, int)
            or not isinstance(end, int)
            or isinstance(start, bool)
            or not isinstance(label, str)
        ):
            raise InputError(f'{where}: an entity needs integer "start", "end" and a string "label" ({entity}).')
        if not 0 <= start < end <= len(text):
            raise InputError(
                f"{where}: entity {start}-{end} ({label}) lies outside the text, which has {len(text)} characters.",
                "Offsets are character positions in the text, end exclusive.",
            )
        mention = text[start:end]
        given = entity.get("text")
        if check_text and isinstance(given, str) and given != mention:
            raise InputError(
                f'{where}: entity {start}-{end} says "{given}" but the text there is "{mention}".',
                "Offsets must be character offsets into this record's text (end exclusive).",
            )
        score = entity.get("score")
        if score is not None and (isinstance(score, bool) or not isinstance(score, (int, float))):
            raise InputError(f'{where}: entity {start}-{end} has a "score" that is not a number ({score!r}).')
        spans.append(Entity(start, end, mention, label, score=None if score is None else float(score)))
    return tuple(spans)


def _given_language(given: Any) -> str:
    """A record's own ``language`` (any non-empty string); "" when it gives none (see :func:`_settle_languages`)."""
    return given.strip() if isinstance(given, str) else ""


def _settle_languages(records: list[GoldRecord]) -> list[GoldRecord]:
    """Records that name no language take their dataset's, one per dataset (so that a dataset stays one row): from
    the dataset's label names, as the prompt picks its template, else from the script of its texts."""
    pending: dict[str, list[GoldRecord]] = {}
    for record in records:
        if not record.language:
            pending.setdefault(record.dataset, []).append(record)
    chosen: dict[str, str] = {}
    for name, group in pending.items():
        names = list(dict.fromkeys(n for r in group for n in (r.labels or [e.label for e in r.entities])))
        chosen[name] = detect_lang(names) if names else script_language("".join(r.text for r in group))
    return [r if r.language else replace(r, language=chosen[r.dataset]) for r in records]


def _label_names(labels: Any, where: str, field: str) -> tuple[str, ...] | None:
    """A list of label names (or an object name -> description); None when absent."""
    if labels is None:
        return None
    if isinstance(labels, dict):
        labels = list(labels)
    if not isinstance(labels, list):
        raise InputError(f"{where}: {field} must be a list of label names, found {type(labels).__name__}.",
                         'e.g. "labels": ["person", "location"]')  # fmt: skip
    for index, name in enumerate(labels):
        if not isinstance(name, str) or not name.strip():
            raise InputError(f"{where}: {field} item {index + 1} is {json.dumps(name)}, not a label name.",
                             'Labels are non-empty strings, e.g. "labels": ["person", "location"]')  # fmt: skip
    return tuple(labels)


def read_gold_jsonl(path: Path, dataset: str | None = None) -> list[GoldRecord]:
    """Our JSONL: `id`, `text`, `entities` [{start, end, label}]; optional `labels`, `dataset`, `language`."""
    records = []
    for where, record in _json_lines(path):
        text = record.get("text")
        if not isinstance(text, str):
            raise InputError(f'{where}: record has no text field "text".')
        spans = _spans(record.get("entities", []), text, where)
        label_names = _label_names(record.get("labels"), where, '"labels"')
        records.append(
            GoldRecord(
                id=str(record.get("id", f"{path}:{where.rsplit(' ', 1)[-1]}")),
                text=text,
                entities=spans,
                labels=label_names,
                dataset=str(record.get("dataset") or dataset or path.stem),
                language=_given_language(record.get("language")),
                source=where,
            )
        )
    return _settle_languages(records)


def read_b2nerd(path: Path, dataset: str | None = None) -> list[GoldRecord]:
    """A B2NERD split file (one JSON array of {sentence, entities: [{name, type, pos}]}), or a folder of them."""
    if path.is_dir():
        files = sorted(path.rglob("test.json"))
        if not files:
            raise InputError(f"{path} holds no B2NERD test.json files.", "Point at a split file or a B2NERD folder.")
        return [record for file in files for record in read_b2nerd(file)]
    name = dataset or b2nerd_dataset(path)
    # upstream picks the language per B2NERD folder: zh for NER_zh, en for NER_en and NER_en_other
    folder = path.parent.parent.name
    language = ("zh" if folder.endswith("_zh") else "en") if folder.startswith("NER_") else ""
    labels = _b2nerd_labels(path.parent / "labels.json")
    try:
        items = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}, line {exc.lineno}: invalid JSON ({exc.msg}).") from None
    except UnicodeDecodeError:
        raise InputError(f"{path} is not valid UTF-8.") from None
    if not isinstance(items, list):
        raise InputError(f"{path}: a B2NERD split file is one JSON array of sentences.")
    records = []
    for index, item in enumerate(items):
        where = f"{path}, item {index + 1}"
        sentence = item.get("sentence") if isinstance(item, dict) else None
        if not isinstance(sentence, str):
            raise InputError(f'{where}: needs a "sentence" string.')
        check_unicode(item, where)
        entities = item.get("entities", [])
        if not isinstance(entities, list):
            raise InputError(f'{where}: "entities" must be a list, found {json.dumps(entities)}.',
                             'e.g. "entities": [{"name": "Obama", "type": "person", "pos": [0, 5]}]')  # fmt: skip
        spans = []
        for number, entity in enumerate(entities, start=1):
            _check_b2nerd_entity(entity, f"{where}, entity {number}")
            kind, pos = entity["type"], entity["pos"]
            if kind in ("", "NA"):
                continue
            spans.append({"start": pos[0], "end": pos[1], "label": kind, "text": entity["name"]})
        own = _label_names(item.get("labels"), where, '"labels"') or labels
        checked = _spans(spans, sentence, where)
        records.append(
            GoldRecord(
                id=f"{name}:{index}",
                text=sentence,
                entities=checked,
                labels=own,
                dataset=name,
                language=language,
                source=where,
            )
        )
    return _settle_languages(records)


_ENTITY_SHAPE = '{"name": "Obama", "type": "person", "pos": [0, 5]}'


def _check_b2nerd_entity(entity: Any, where: str) -> None:
    if not isinstance(entity, dict):
        raise InputError(f"{where}: expected an object like {_ENTITY_SHAPE}, found {json.dumps(entity)}.")
    for key, kind in (("name", str), ("type", str), ("pos", list)):
        if not isinstance(entity.get(key), kind):
            found = "missing" if key not in entity else json.dumps(entity[key])
            raise InputError(f'{where}: "{key}" must be a {kind.__name__}, found {found}.',
                             f"B2NERD entities look like {_ENTITY_SHAPE}.")  # fmt: skip
    pos = entity["pos"]
    if len(pos) != 2 or not all(isinstance(p, int) and not isinstance(p, bool) for p in pos):
        raise InputError(f'{where}: "pos" must be two integers [start, end], found {json.dumps(pos)}.',
                         "Positions are character offsets into the sentence, end exclusive.")  # fmt: skip


def _b2nerd_labels(path: Path) -> tuple[str, ...] | None:
    """A split's ``labels.json`` (a JSON list of names) beside it, or None when there is none."""
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}, line {exc.lineno}: invalid JSON ({exc.msg}).",
                         'labels.json is a JSON list of names, e.g. ["person", "location"].') from None  # fmt: skip
    except UnicodeDecodeError:
        raise InputError(f"{path} is not valid UTF-8.", "Convert the file to UTF-8.") from None
    check_unicode(value, str(path))
    if not isinstance(value, list):
        raise InputError(f"{path}: expected a JSON list of label names, found {type(value).__name__}.",
                         'e.g. ["person", "location"]')  # fmt: skip
    return _label_names(value, str(path), "the list")


def read_conll(path: Path, dataset: str | None = None) -> list[GoldRecord]:
    """Token-per-line columns (token first, tag last), sentences split by blank lines; BIO, IOBES or BMES tags.

    Tokens are joined as the sentence was written (:func:`b2ner_cli.io.conll.join_tokens`: no spaces next to CJK
    characters and full-width punctuation); the language is the script of the whole file (``zh`` when Han characters
    make at least half of its letters), so that a dataset is one language.
    """
    records: list[GoldRecord] = []
    for sentence in conll_sentences(_lines(path)):
        for token, tag, number in zip(sentence.tokens, sentence.tags, sentence.lines, strict=True):
            if tag is None:
                raise InputError(f"{path}, line {number}: expected a token and a tag, found {token!r} alone.",
                                 "CoNLL lines are: TOKEN ... TAG")  # fmt: skip
        records.append(_conll_sentence(sentence, path, dataset or path.stem, len(records)))
    language = script_language("".join(r.text for r in records))
    return [replace(r, language=language) for r in records]


def _conll_sentence(sentence: ConllSentence, path: Path, dataset: str, index: int) -> GoldRecord:
    text, offsets = join_tokens(sentence.tokens)
    spans: list[Entity] = []
    current: tuple[int, str] | None = None  # (start token index, label)

    def close(end_token: int) -> None:
        nonlocal current
        if current is not None:
            start = offsets[current[0]][0]
            end = offsets[end_token][1]
            spans.append(Entity(start, end, text[start:end], current[1]))
            current = None

    for i, (tag, number) in enumerate(zip(sentence.tags, sentence.lines, strict=True)):
        assert tag is not None
        if tag == "O":
            close(i - 1)
            continue
        prefix, sep, label = tag.partition("-") if "-" in tag else tag.partition("_")
        if not sep or prefix.upper() not in ("B", "I", "E", "S", "M", "L", "U"):
            raise InputError(f"{path}, line {number}: tag {tag!r} is not O, B-X, I-X, E-X, S-X or M-X.")
        if not label.strip():
            raise InputError(f"{path}, line {number}: tag {tag!r} has no entity type.",
                             "Tags name the type after the prefix, e.g. B-PER, I-PER.")  # fmt: skip
        prefix = prefix.upper()
        if prefix in ("B", "S", "U") or current is None or current[1] != label:
            close(i - 1)
            current = (i, label)
        if prefix in ("E", "S", "L", "U"):
            close(i)
    close(len(sentence.tokens) - 1)
    return GoldRecord(
        id=f"{path}:{index + 1}",
        text=text,
        entities=tuple(spans),
        labels=None,
        dataset=dataset,
        language="",  # set for the whole file by read_conll
        source=f"{path}, line {sentence.lines[0]}",
    )


def read_gold(path: Path, fmt: GoldFormat = "auto", dataset: str | None = None) -> list[GoldRecord]:
    if fmt == "auto":
        if path.is_dir() or path.suffix == ".json":
            fmt = "b2nerd"
        elif path.suffix in (".jsonl", ".ndjson"):
            fmt = "jsonl"
        else:
            fmt = "conll"
    reader = {"jsonl": read_gold_jsonl, "b2nerd": read_b2nerd, "conll": read_conll}[fmt]
    if not path.exists():
        raise InputError(f"Gold file {path} does not exist.", "Check the path.")
    return reader(path, dataset)


def read_predictions(path: Path) -> dict[str, PredRecord]:
    """Our extract JSONL, by id (``raw`` is used for the b2ner metric when present)."""
    predictions: dict[str, PredRecord] = {}
    for where, record in _json_lines(path):
        if "id" not in record or not isinstance(record.get("text"), str):
            raise InputError(f'{where}: a prediction needs "id" and "text" (the JSONL that b2ner extract writes).')
        spans = _spans(record.get("entities", []), record["text"], where)
        unmatched = record.get("unmatched") or []
        raw = record.get("raw")
        if isinstance(raw, str):
            answer = raw
        else:
            pairs = [(s.label, s.text) for s in spans] + [
                (str(u.get("label")), str(u.get("text"))) for u in unmatched if isinstance(u, dict)
            ]
            answer = answer_from_pairs(dict.fromkeys(pairs))
        key = str(record["id"])
        if key in predictions:
            raise InputError(f'{where}: id "{key}" appears twice.', "Ids must be unique.")
        predictions[key] = PredRecord(key, spans, answer, len(unmatched), where, record["text"], isinstance(raw, str))
    return predictions


def read_conll_predictions(path: Path, gold: Sequence[GoldRecord]) -> dict[str, PredRecord]:
    """Predictions as CoNLL columns (a tagger's output, say): no ids, so the N-th sentence is the N-th gold record's
    prediction (its text is checked against the gold text by :func:`~.report.evaluate`)."""
    sentences = read_conll(path)
    if len(sentences) != len(gold):
        raise InputError(
            f"{path} holds {len(sentences)} sentences but the gold data {len(gold)} records.",
            "CoNLL predictions are matched to the gold records by order: give one sentence per gold record.",
        )
    return {
        record.id: PredRecord(record.id, predicted.entities, predicted.answer(), 0, predicted.source, predicted.text)
        for record, predicted in zip(gold, sentences, strict=True)
    }


def read_upstream(path: Path) -> list[UpstreamRecord]:
    """Upstream ``predict_eval_predictions.jsonl``: {Task, Dataset, Language, Instance{...}, Prediction}."""
    records = []
    for where, record in _json_lines(path):
        instance = record.get("Instance")
        prediction = record.get("Prediction")
        if not isinstance(instance, dict) or not isinstance(prediction, str):
            raise InputError(f'{where}: an upstream prediction needs "Instance" and a "Prediction" string.')
        gold = instance.get("ground_truth")
        if not isinstance(gold, str):
            raise InputError(f'{where}: "Instance" needs a "ground_truth" answer string.')
        records.append(
            UpstreamRecord(
                id=str(instance.get("id", where)),
                dataset=str(record.get("Dataset", path.stem)),
                # upstream files a row without "Language" under the language "" (its own group): "unknown" here
                language=str(record.get("Language") or UNKNOWN_LANGUAGE),
                sentence=str(instance.get("sentence", "")),
                gold_answer=gold,
                predicted_answer=prediction,
            )
        )
    return records
