"""Simulated-annotator protocols (DESIGN section 5)."""
