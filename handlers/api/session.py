"""``/api/v1/session``: log in with a ``wx.login()`` code, log out."""

from __future__ import annotations

import pymongo

from bot import api_texts
from bot.mini_sessions import MAX_CODE_LENGTH
from bot.validation import Invalid
from handlers.api.base import MONGO_BUDGET, ApiHandler
from handlers.api.me import user_state


class SessionHandler(ApiHandler):
    """POST: exchange the code for our token. DELETE: end this token's session."""

    submits = False  # a log-in: nothing of the user's to lose

    address_bucket = "login"
    #: WeChat's jscode2session may take seconds: the MongoDB budget starts after it.
    budgets_itself = ("post",)

    async def prepare(self) -> None:
        self.public = self.request.method != "DELETE"
        await super().prepare()

    def address_limit(self) -> int:
        return self.runtime.mini.limits.login_per_address

    async def post(self) -> None:
        code = self.json_body().get("code")
        if not isinstance(code, str) or not code.strip():
            raise Invalid(api_texts.CODE_MISSING, "code")
        if len(code) > MAX_CODE_LENGTH:
            raise Invalid(api_texts.CODE_TOO_LONG.format(limit=MAX_CODE_LENGTH), "code")
        login = await self.runtime.mini.login(code.strip(), mongo_budget=MONGO_BUDGET)
        with pymongo.timeout(MONGO_BUDGET):
            user = await user_state(self.runtime, login.user)
        self.write_json({"token": login.token, "token_type": "Bearer", "expires_in": login.expires_in, "user": user})

    async def delete(self) -> None:
        await self.runtime.mini.logout(self.bearer() or "")
        self.set_status(204)
        self.finish()
