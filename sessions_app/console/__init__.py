"""The staff console: its views, its live feed and its charts."""
