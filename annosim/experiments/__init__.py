"""Experiment files: datasets x models x protocols declared in one TOML file, run into one tree
of results folders and one report (``annosim experiment``, ``annosim reproduce``)."""
