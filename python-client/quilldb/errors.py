"""QuillDB's errors: one class per gRPC code the server answers (spec/flight.md), each carrying
the server's own message."""

from __future__ import annotations

import re
from typing import Dict, Optional, Type

import pyarrow as pa
import pyarrow.flight as flight


class Error(Exception):
    """Any error QuillDB or the connection to it answered. `code` is the gRPC code's name."""

    code: str = "UNKNOWN"

    def __init__(self, message: str, code: Optional[str] = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class InvalidArgument(Error):
    """The statement or its parameters are wrong (INVALID_ARGUMENT)."""

    code = "INVALID_ARGUMENT"


class NotFound(Error):
    """A namespace, table, user or job that does not exist (NOT_FOUND)."""

    code = "NOT_FOUND"


class AlreadyExists(Error):
    """An object or primary key that exists already (ALREADY_EXISTS)."""

    code = "ALREADY_EXISTS"


class PermissionDenied(Error):
    """The caller's role or rights do not allow it (PERMISSION_DENIED)."""

    code = "PERMISSION_DENIED"


class Unauthenticated(Error):
    """No valid credentials or token (UNAUTHENTICATED)."""

    code = "UNAUTHENTICATED"


class Aborted(Error):
    """A transaction lost a write conflict; run it again (ABORTED)."""

    code = "ABORTED"


class ResourceExhausted(Error):
    """A configured limit: SQL length, message size, subscriptions, queries, memory."""

    code = "RESOURCE_EXHAUSTED"


class Unavailable(Error):
    """The server cannot be reached or is shutting down (UNAVAILABLE)."""

    code = "UNAVAILABLE"


class Cancelled(Error):
    """The call was cancelled (CANCELLED)."""

    code = "CANCELLED"


class DeadlineExceeded(Error):
    """The query ran past its timeout (DEADLINE_EXCEEDED)."""

    code = "DEADLINE_EXCEEDED"


class Unimplemented(Error):
    """The server does not support the request (UNIMPLEMENTED)."""

    code = "UNIMPLEMENTED"


class FailedPrecondition(Error):
    """The request does not fit the state it met (FAILED_PRECONDITION)."""

    code = "FAILED_PRECONDITION"


class Internal(Error):
    """A fault inside the server (INTERNAL)."""

    code = "INTERNAL"


class SubscriptionError(Error):
    """A subscription ended with an ERROR or CLOSED event it cannot resume from; `code` is the
    event's (for example `resume_too_old`, `unauthorized`, `table_dropped`)."""


_BY_CODE: Dict[str, Type[Error]] = {
    c.code: c
    for c in (
        InvalidArgument, NotFound, AlreadyExists, PermissionDenied, Unauthenticated, Aborted,
        ResourceExhausted, Unavailable, Cancelled, DeadlineExceeded, Unimplemented,
        FailedPrecondition, Internal,
    )
}

# pyarrow's wording of each gRPC code ("Flight returned <words> error, with message: ...", or
# "gRPC returned ..." for codes Flight has no status of its own for).
_BY_WORDS = {
    "invalid argument": "INVALID_ARGUMENT",
    "not found": "NOT_FOUND",
    "already exists": "ALREADY_EXISTS",
    "unauthorized": "PERMISSION_DENIED",
    "permission denied": "PERMISSION_DENIED",
    "unauthenticated": "UNAUTHENTICATED",
    "aborted": "ABORTED",
    "resource exhausted": "RESOURCE_EXHAUSTED",
    "unavailable": "UNAVAILABLE",
    "cancelled": "CANCELLED",
    "timeout": "DEADLINE_EXCEEDED",
    "deadline exceeded": "DEADLINE_EXCEEDED",
    "not implemented": "UNIMPLEMENTED",
    "unimplemented": "UNIMPLEMENTED",
    "failed precondition": "FAILED_PRECONDITION",
    "internal": "INTERNAL",
}

_BY_TYPE = (
    (flight.FlightUnauthenticatedError, "UNAUTHENTICATED"),
    (flight.FlightUnauthorizedError, "PERMISSION_DENIED"),
    (flight.FlightUnavailableError, "UNAVAILABLE"),
    (flight.FlightCancelledError, "CANCELLED"),
    (flight.FlightTimedOutError, "DEADLINE_EXCEEDED"),
    (pa.ArrowInvalid, "INVALID_ARGUMENT"),
    (pa.ArrowKeyError, "NOT_FOUND"),
    (pa.ArrowNotImplementedError, "UNIMPLEMENTED"),
    (pa.ArrowCapacityError, "RESOURCE_EXHAUSTED"),
)

_DEBUG_CODE = re.compile(r"gRPC client debug context: ([A-Z_]+):")
_RETURNED = re.compile(r"(?:Flight|gRPC) returned ([a-z ]+?) error, with message: (.*)", re.S)


def from_flight(exc: BaseException) -> Error:
    """The QuillDB error for an exception raised by pyarrow.flight."""
    text = str(exc)
    code = None
    message = text
    found = _RETURNED.search(text)
    if found:
        code = _BY_WORDS.get(found.group(1))
        message = found.group(2)
    debug = _DEBUG_CODE.search(text)
    if debug:
        code = debug.group(1)
        message = message[: message.find(". gRPC client debug context:")] if (
            ". gRPC client debug context:" in message
        ) else message
    if code is None:
        for kind, name in _BY_TYPE:
            if isinstance(exc, kind):
                code = name
                break
    message = message.strip()
    if message.endswith(". Client context: OK"):
        message = message[: -len(". Client context: OK")]
    cls = _BY_CODE.get(code or "", Error)
    return cls(message, code or "UNKNOWN")
