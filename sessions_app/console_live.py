"""The staff console's `/ws/console/` live feed (issue 4 fills this in)."""

from channels.generic.websocket import AsyncJsonWebsocketConsumer


class ConsoleConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated or not user.is_staff:
            await self.close(code=4403)
            return
        await self.accept()
