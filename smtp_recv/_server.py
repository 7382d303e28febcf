"""Placeholder; replaced by the trio servers."""
