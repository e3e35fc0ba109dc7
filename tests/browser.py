"""Headless Chromium command lines for the tests that render pages (the executable comes from
the ``chromium`` fixture in conftest)."""

from __future__ import annotations

from pathlib import Path


def chromium_command(exe: str, profile: Path, *args: str) -> list[str]:
    """A headless Chromium command line without background network traffic."""
    return [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={profile}", *args]
