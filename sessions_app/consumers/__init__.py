"""One consumer per WebSocket endpoint."""
