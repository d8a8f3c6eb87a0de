"""The JSON API at /api/v1/ (DESIGN.md §5), compatible with the earlier FastAPI service.

A package rather than the single `api.py` of the DESIGN layout, because it has four parts that
change for different reasons: `errors` (the one JSON error shape and its statuses), `auth` (who
is calling: a bearer token or a logged-in browser, and whom they may act for), `views` (the
endpoints, thin adapters over services and selectors) and `schema` (the OpenAPI description
that schemathesis checks the live server against).
"""
