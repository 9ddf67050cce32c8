"""How the HTTP service listens, batches and limits requests (torch- and framework-free)."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
#: how long the first request of a batch waits for others to join it.
DEFAULT_BATCH_WAIT_MS = 10.0
#: texts of all requests in one batch (one window through the recognizer).
DEFAULT_MAX_BATCH_TEXTS = 256
DEFAULT_MAX_TEXTS = 256
DEFAULT_MAX_CHARS = 100_000
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class ServeSettings:
    """Every field has a ``b2ner serve`` flag of the same meaning."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    batch_wait_ms: float = DEFAULT_BATCH_WAIT_MS
    max_batch_texts: int = DEFAULT_MAX_BATCH_TEXTS
    #: texts in one request.
    max_texts: int = DEFAULT_MAX_TEXTS
    #: characters in one text.
    max_chars: int = DEFAULT_MAX_CHARS
    #: bytes in one request body.
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    #: add "raw" (the model's answer as generated) to each record.
    keep_raw: bool = False

    def limits(self) -> dict[str, object]:
        """The limits a client must keep to (shown by ``GET /info``)."""
        return {
            "max_texts": self.max_texts,
            "max_chars": self.max_chars,
            "max_body_bytes": self.max_body_bytes,
            "max_batch_texts": self.max_batch_texts,
            "batch_wait_ms": self.batch_wait_ms,
        }
