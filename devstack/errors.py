"""The one exception devstack reports as a short message before exiting non-zero, and error text."""

from __future__ import annotations


class DevstackError(Exception):
    """Something the developer must fix, explained in the message (no traceback is shown)."""

    def __init__(self, message: str, *, log_title: str | None = None, log_tail: str | None = None) -> None:
        super().__init__(message)
        #: Optional log lines to show under the message, e.g. the last lines of a dead service's log.
        self.log_title = log_title
        self.log_tail = log_tail


def one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__
