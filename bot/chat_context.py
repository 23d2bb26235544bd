"""What a chat handler receives."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from bot.inbound import Inbound
from bot.replies import Reply
from bot.services import Services
from storage.dialog_state import DialogState
from storage.mongo import MongoUnavailable
from storage.redis_store import RedisUnavailable

if TYPE_CHECKING:
    from bot.consent import ConsentState
    from bot.router import Router


@dataclasses.dataclass
class Chat:
    """One message being handled: the message, the services, the user's dialog state."""

    message: Inbound
    services: Services
    dialog: DialogState | None = None
    router: "Router | None" = None
    #: Groups of a command's argument pattern (``条款 3`` gives ``("3",)``).
    args: tuple = ()
    #: True when the dialog state could not be read (Redis down): the user may
    #: be in the middle of a dialog that cannot continue right now.
    state_unknown: bool = False
    _consent: "ConsentState | BaseException | None" = dataclasses.field(default=None, repr=False)

    async def fresh_consent(self) -> "ConsentState":
        """:meth:`consent`, read again against the versions as stored now."""
        self._consent = await self.services.consents.fresh_state(self.openid)
        return self._consent

    async def consent(self) -> "ConsentState":
        """The user's consent state, read once per message (a database that is
        down costs its timeout once, not at every look)."""
        if self._consent is None:
            try:
                self._consent = await self.services.consents.state(self.openid)
            except Exception as exc:
                self._consent = exc
        if isinstance(self._consent, BaseException):
            raise self._consent
        return self._consent

    async def accepted_or_unknown(self) -> bool | None:
        """Whether the user accepted the version in force; None when their
        state cannot be read (a reply that only reads the agreement goes out anyway)."""
        try:
            return (await self.consent()).accepted
        except MongoUnavailable:
            return None

    async def asked_to_accept(self, version: str) -> None:
        """Note that the reply asks the user to accept ``version``: a 同意 that
        comes after another version took effect is then not taken for it."""
        try:
            await self.services.dialogs.remember_prompt(self.openid, version)
        except RedisUnavailable:
            pass  # the 同意 is then taken for the version in force, as before

    async def version_asked(self) -> str | None:
        """The version the user was last asked to accept, if remembered
        (raises ``RedisUnavailable``: not knowing is not "not asked")."""
        return await self.services.dialogs.prompted(self.openid)

    def forget_consent(self) -> None:
        """Drop the remembered state after the user changed it."""
        self._consent = None

    @property
    def openid(self) -> str:
        return self.message.openid

    @property
    def state(self) -> str | None:
        """The name of the user's dialog state, if any."""
        return self.dialog.name if self.dialog else None

    async def run_command(self, text: str) -> Reply | None:
        """Handle ``text`` as if the user had typed it now (to resume an action)."""
        assert self.router is not None
        message = dataclasses.replace(self.message, kind="text", content=text, event="", event_key="")
        return await self.router.dispatch(Chat(message, self.services, self.dialog, self.router))
