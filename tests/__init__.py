"""Tidal's unit and integration tests."""
