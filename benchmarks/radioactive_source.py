"""A RadioActive source checkout's modules as an importable tree (for the crosscheck scripts):
the named source files copied under a temporary root beside stand-in modules for the imports
they do not need, with ``__init__.py`` in every package folder."""

from __future__ import annotations

from pathlib import Path


def build_tree(src: Path, root: Path, source_files: tuple[str, ...], stubs: dict[str, str]) -> None:
    """Copy ``source_files`` (paths relative to ``src``) and write ``stubs`` (path -> text) under
    ``root``; every folder between ``root`` and a file gets an empty ``__init__.py``."""
    files = {f: (src / f).read_text() for f in source_files} | stubs
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        for parent in path.relative_to(root).parents:
            if str(parent) != ".":
                init = root / parent / "__init__.py"
                if not init.exists():
                    init.touch()
