"""Fixtures that start the real local deployment server (filled in by the server work)."""
