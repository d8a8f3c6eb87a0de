"""The admission engine (Redis scripts, manager) and the seat use-cases built on it."""
