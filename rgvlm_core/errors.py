"""One error hierarchy for everything a user can get wrong.

The CLI prints these as one red line with exit code 1 and the app shows them with `st.error`;
any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class RGVLMError(Exception):
    """A problem the user can fix: the message names the bad file, field or value and the fix."""


class DataFormatError(RGVLMError):
    """An input file does not follow its format; `source` and `field` say where."""

    def __init__(self, source: str, field: str, problem: str) -> None:
        self.source = source
        self.field = field
        self.problem = problem
        super().__init__(f"{source}: {field}: {problem}" if field else f"{source}: {problem}")


class WorkspaceError(RGVLMError):
    """The workspace folder is missing, unreadable, or written by an incompatible version."""


class UsageError(RGVLMError):
    """A command or call was given arguments that cannot work together."""


def os_reason(exc: OSError) -> str:
    """`Not a directory: /path` from an OSError, without Python's `[Errno 20]` prefix."""
    reason = exc.strerror or str(exc)
    return f"{reason}: {exc.filename}" if exc.filename else reason
