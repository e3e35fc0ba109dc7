"""Exceptions that carry a one-line, user-facing message."""

from __future__ import annotations

from pathlib import Path


class AnnosimError(Exception):
    """An error whose message is shown to the user as one line, without a traceback."""


class InputError(AnnosimError):
    """Bad input data: names the offending file and the problem.

    >>> str(InputError("ct.nii.gz", "image is 2D, expected 3D"))
    'ct.nii.gz: image is 2D, expected 3D'
    """

    def __init__(self, path: str | Path | None, problem: str):
        self.path = None if path is None else str(path)
        self.problem = problem
        super().__init__(problem if self.path is None else f"{self.path}: {problem}")


class ConfigError(AnnosimError):
    """Bad command-line configuration (unknown model, protocol, option value...)."""


class ResultsFolderError(AnnosimError):
    """A results folder made by another configuration, or in use by another run."""


class RunInterrupted(AnnosimError):
    """The user stopped a run (Ctrl-C); the message says what was saved and how to resume."""


class WriteFailed(AnnosimError):
    """Writing the results folder failed (no space, read-only, permission): the run stops with
    one line; what was committed before stays valid and a rerun resumes it."""
