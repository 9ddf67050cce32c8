"""``POST /extract`` bodies: parsed and checked into documents, or refused with a status and a one-line reason.

``{"texts": [...], "labels": [...] | {label: description}, "ids": [...]}``: ``texts`` is required; ``labels`` may be
left out when the model brings its own (a tagger, a finetuned adapter) or the service was started with ``-l``;
``ids`` default to each text's position in the request ("0", "1", ...).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from ..errors import B2nerError
from ..io.readers import Document
from ..io.unicode import lone_surrogate
from ..labels import json_object_pairs, labels_from_json
from ..prompts import LabelSet
from .settings import ServeSettings

FIELDS = ("texts", "labels", "ids")
EXAMPLE = 'Send e.g. {"texts": ["Ada Lovelace was born in London."], "labels": ["person", "location"]}.'

BAD_REQUEST = 400
TOO_LARGE = 413


class RequestError(B2nerError):
    """A request the service refuses: ``status`` is the HTTP status (4xx)."""

    def __init__(self, status: int, message: str, hint: str | None = None) -> None:
        super().__init__(message, hint)
        self.status = status

    def to_dict(self) -> dict[str, object]:
        body: dict[str, object] = {"error": self.message}
        if self.hint:
            body["hint"] = self.hint
        return body


@dataclass(frozen=True)
class ExtractRequest:
    documents: tuple[Document, ...]
    #: the request's own labels (None: the service's default).
    labels: LabelSet | None


def body_too_large(limit: int) -> RequestError:
    return RequestError(TOO_LARGE, f"The request body is larger than {limit} bytes (--max-body-bytes).",
                        "Split the texts over several requests.")  # fmt: skip


def parse_request(body: bytes, settings: ServeSettings) -> ExtractRequest:
    """The documents a request body asks about, each with the request's labels; RequestError when it is wrong."""
    if len(body) > settings.max_body_bytes:
        raise body_too_large(settings.max_body_bytes)
    try:
        data = json.loads(body.decode("utf-8"), object_pairs_hook=json_object_pairs)
    except UnicodeDecodeError:
        raise RequestError(BAD_REQUEST, "The request body is not UTF-8.", EXAMPLE) from None
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
        raise RequestError(BAD_REQUEST, f"The request body is not valid JSON ({exc.msg} at {where}).",
                           EXAMPLE) from None  # fmt: skip
    if not isinstance(data, dict):
        raise RequestError(BAD_REQUEST, f"The request body must be a JSON object, not {_kind(data)}.", EXAMPLE)
    unknown = [key for key in data if key not in FIELDS]
    if unknown:
        names = ", ".join(f'"{key}"' for key in unknown)
        raise RequestError(BAD_REQUEST, f"Unknown field{'s' if len(unknown) > 1 else ''} {names} in the request.",
                           'The fields are "texts" (required), "labels" and "ids".')  # fmt: skip
    texts = _texts(data.get("texts"), settings)
    ids = _ids(data.get("ids"), len(texts))
    labels = _labels(data.get("labels"))
    documents = tuple(
        Document(id=doc_id, text=text, labels=labels, source=f"texts[{i}]")
        for i, (doc_id, text) in enumerate(zip(ids, texts, strict=True))
    )
    return ExtractRequest(documents, labels)


def _texts(value: object, settings: ServeSettings) -> list[str]:
    if value is None:
        raise RequestError(BAD_REQUEST, 'The request has no "texts".', EXAMPLE)
    if not isinstance(value, list):
        raise RequestError(BAD_REQUEST, f'"texts" must be a list of strings, not {_kind(value)}.', EXAMPLE)
    if not value:
        raise RequestError(BAD_REQUEST, '"texts" is empty.', "Send at least one text.")
    if len(value) > settings.max_texts:
        raise RequestError(TOO_LARGE, f"{len(value)} texts in one request; the limit is {settings.max_texts} "
                           "(--max-texts).", "Split the texts over several requests.")  # fmt: skip
    for i, text in enumerate(value):
        if not isinstance(text, str):
            raise RequestError(BAD_REQUEST, f'"texts[{i}]" must be a string, not {_kind(text)}.', EXAMPLE)
        if len(text) > settings.max_chars:
            raise RequestError(TOO_LARGE, f'"texts[{i}]" has {len(text)} characters; the limit is '
                               f"{settings.max_chars} (--max-chars).", "Split the text into parts.")  # fmt: skip
        _check_unicode(text, f"texts[{i}]")
    return value


def _ids(value: object, count: int) -> list[str]:
    if value is None:
        return [str(i) for i in range(count)]
    if not isinstance(value, list) or len(value) != count:
        given = f"a list of {len(value)}" if isinstance(value, list) else _kind(value)
        raise RequestError(BAD_REQUEST, f'"ids" must be a list of {count} (one per text), not {given}.',
                           'Leave "ids" out to number the texts from 0.')  # fmt: skip
    for i, doc_id in enumerate(value):
        if not isinstance(doc_id, (str, int)) or isinstance(doc_id, bool):
            raise RequestError(BAD_REQUEST, f'"ids[{i}]" must be a string or an integer, not {_kind(doc_id)}.')
        _check_unicode(doc_id, f"ids[{i}]")
    return [str(doc_id) for doc_id in value]


def _labels(value: object) -> LabelSet | None:
    if value is None:
        return None
    try:
        return labels_from_json(value, where='"labels"')
    except B2nerError as error:  # LabelError, or InputError for a lone surrogate
        raise RequestError(BAD_REQUEST, error.message, error.hint) from None


def _check_unicode(value: object, field: str) -> None:
    found = lone_surrogate(value, field)
    if found is not None:
        raise RequestError(BAD_REQUEST, f'"{found[0]}" holds a lone surrogate ({found[1]!a}).',
                           "Send valid Unicode: a surrogate must be half of a pair.")  # fmt: skip


def _kind(value: object) -> str:
    """A JSON value's type in JSON's words."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"
