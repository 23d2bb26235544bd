"""Typed errors of the domain, each with a stable code and a message for users.

Chat renders ``message`` as the reply, the API as
``{"error": {"code", "message"}}`` with the HTTP status its ``kind`` maps to
(``handlers.base.HTTP_STATUS``), the CLI prints it and exits with 2. One
mapping, not one per handler; the domain names what went wrong, not how
HTTP says it.
"""

from __future__ import annotations


#: The kinds of error: a request not understood, or well formed but breaking a
#: rule (``invalid``); who is asking not known, or not allowed; what is asked
#: about not found; in conflict with the present state, or with the state the
#: asker said they saw (``precondition_failed``); too much at once (a body)
#: or too many attempts; a part of the service briefly unavailable.
KINDS = ("bad_request", "invalid", "unauthenticated", "forbidden", "not_found", "conflict",
         "precondition_failed", "too_large", "too_many", "unavailable")


class BotError(Exception):
    """Base: ``code`` is stable English, ``message`` Chinese for the user."""

    kind = "bad_request"
    code = "bad_request"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

