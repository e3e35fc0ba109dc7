"""The built-in demo data: the chest CT with its segmentation that the ``slicerio`` package
ships (``CTChest4.nrrd``, ``Segmentation.seg.nrrd``: ribs, vertebral columns, lungs, tissue)."""

from __future__ import annotations

from pathlib import Path

from annosim.errors import ConfigError


def demo_files() -> tuple[Path, Path]:
    """Paths of the demo image and its 3D Slicer segmentation."""
    try:
        import slicerio
    except ModuleNotFoundError:
        raise ConfigError("the demo data comes with the 'slicerio' package: pip install slicerio") from None
    folder = Path(slicerio.__file__).resolve().parent / "data"
    image, label = folder / "CTChest4.nrrd", folder / "Segmentation.seg.nrrd"
    for path in (image, label):
        if not path.is_file():
            raise ConfigError(f"{path}: demo file missing from the slicerio package")
    return image, label


def demo_spec() -> str:
    """The ``--data`` spec of the demo case (an ``IMAGE LABEL`` pair, quoted for spaces)."""
    import shlex

    image, label = demo_files()
    return f"{shlex.quote(str(image))} {shlex.quote(str(label))}"
