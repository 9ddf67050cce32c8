"""Typed errors of the b2ner core.

The core raises these and never prints or exits; the CLI's single error boundary turns
them into ``Error: ...`` / ``Hint: ...`` lines on stderr and the exit code below.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP: handled like Ctrl-C (valid partial output, status "interrupted"), exit 128 + signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class B2nerError(Exception):
    """A known failure: shown to the user as one line, plus an optional hint."""

    exit_code = EXIT_RUNTIME

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class UsageError(B2nerError):
    """The command line or its arguments are wrong (exit code 2)."""

    exit_code = EXIT_USAGE


class LabelError(UsageError):
    """An empty, duplicated or otherwise unusable label set."""


class InputError(B2nerError):
    """An input file is missing, unreadable, not UTF-8 or not valid JSONL."""


class OutputError(B2nerError):
    """An output cannot be written: a directory, an unwritable place, a full disk."""


class ModelError(B2nerError):
    """A model or tokenizer cannot be found or loaded."""


class AdapterError(ModelError):
    """A LoRA adapter cannot be loaded onto the chosen backbone."""
