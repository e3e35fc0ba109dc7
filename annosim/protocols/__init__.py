"""Simulated-annotator protocols (README, Protocols)."""
