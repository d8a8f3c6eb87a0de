"""The JSON API, compatible with the earlier FastAPI service (issue 5 fills this in)."""
