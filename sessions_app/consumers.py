"""The person's `/ws/chat/` socket (issue 3 fills this in)."""

from typing import Any

from asgiref.sync import sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from sessions_app import selectors, services


class ChatConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        await self.accept()
        outcome = await sync_to_async(services.session_open)(user=user, via="page")
        status = await sync_to_async(selectors.session_status)(outcome.session_id)
        await self.send_json({"type": "queue.status", **status.as_dict(), "version": 0})

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        await self.send_json({"type": "error", "code": "BAD_REQUEST", "message": "not yet"})
