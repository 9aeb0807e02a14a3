"""Bundled scenario files (`smoke`, `plant`, `stress`), shipped as package data."""
