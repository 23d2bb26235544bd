"""What a chat handler receives."""

from __future__ import annotations

import dataclasses

from bot.inbound import Inbound
from bot.services import Services
from storage.dialog_state import DialogState


@dataclasses.dataclass
class Chat:
    """One message being handled: the message, the services, the user's dialog state."""

    message: Inbound
    services: Services
    dialog: DialogState | None = None

    @property
    def openid(self) -> str:
        return self.message.openid

    @property
    def state(self) -> str | None:
        """The name of the user's dialog state, if any."""
        return self.dialog.name if self.dialog else None
