"""Subcommands of the ``annosim`` CLI, one module per concern (see :mod:`annosim.cli`)."""
