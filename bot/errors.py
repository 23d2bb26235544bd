"""Typed errors of the domain, each with a stable code and a message for users.

Chat renders ``message`` as the reply, the API as
``{"error": {"code", "message"}}`` with ``status``, the CLI prints it and
exits with 2. One mapping, not one per handler.
"""

from __future__ import annotations


class BotError(Exception):
    """Base: ``code`` is stable English, ``message`` Chinese for the user."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

