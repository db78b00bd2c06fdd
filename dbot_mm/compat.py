"""Compatibility fixes for the pinned stack (filled in by utils/)."""
