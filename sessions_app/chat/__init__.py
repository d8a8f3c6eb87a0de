"""Conversations, messages and their generation through the gate's slots; the model backends."""
