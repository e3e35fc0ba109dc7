"""Folder layouts of two public datasets that ship without a ``dataset.json``: BTCV and AbdomenCT-1K.

``btcv``         Multi-Atlas Labeling Beyond the Cranial Vault, Abdomen (Synapse syn3193805,
                 ``RawData.zip``): ``RawData/Training/img/imgNNNN.nii.gz`` and
                 ``RawData/Training/label/labelNNNN.nii.gz``. The spec is the ``Training``
                 folder, or a folder above it holding ``RawData/Training``. Only the training
                 cases have labels.
``abdomenct1k``  AbdomenCT-1K (github.com/JunMa11/AbdomenCT-1K): images
                 ``AbdomenCT-1K-ImagePart<k>/Case_NNNNN_0000.nii.gz`` in several parts and masks
                 ``Mask/Case_NNNNN.nii.gz``. The spec is the folder holding ``Mask`` and the parts;
                 a mask whose image is in no part present is left out (download the part to
                 include it).

Label names are the datasets' own (the same as the ``label_dict`` of Project-MONAI/VISTA's
``BTCV-Abdomen_5_folds.json`` and ``AbdomenCT-1K_5_folds.json``). Case ids are the image file
names without extension (``img0021``, ``Case_00697_0000``), as the datalist layout gives them.
This module only lists files; :mod:`annosim.data.layouts` turns them into cases.
"""

from __future__ import annotations

from pathlib import Path

from annosim.errors import InputError

#: BTCV's 13 abdominal organs by label value.
BTCV_NAMES: dict[int, str] = {
    1: "spleen", 2: "right kidney", 3: "left kidney", 4: "gallbladder", 5: "esophagus", 6: "liver",
    7: "stomach", 8: "aorta", 9: "inferior vena cava", 10: "portal vein and splenic vein", 11: "pancreas",
    12: "right adrenal gland", 13: "left adrenal gland",
}
#: AbdomenCT-1K's four organs by label value.
ABDOMENCT1K_NAMES: dict[int, str] = {1: "liver", 2: "kidney", 3: "spleen", 4: "pancreas"}
#: Image part folders of AbdomenCT-1K.
ABDOMENCT1K_PARTS = "AbdomenCT-1K-ImagePart*"

#: A listed case: (image path, label path).
Listed = tuple[str, str]


def btcv_training(folder: Path) -> Path | None:
    """The ``Training`` folder (holding ``img`` and ``label``) at or under ``folder``, or None."""
    for candidate in (folder, folder / "Training", folder / "RawData" / "Training"):
        if (candidate / "img").is_dir() and (candidate / "label").is_dir():
            return candidate
    return None


def is_abdomenct1k(folder: Path) -> bool:
    """Whether ``folder`` holds ``Mask`` and at least one ``AbdomenCT-1K-ImagePart*`` folder."""
    return (folder / "Mask").is_dir() and any(p.is_dir() for p in folder.glob(ABDOMENCT1K_PARTS))


def list_btcv(folder: Path) -> tuple[Path, list[Listed]]:
    """(Training folder, cases sorted by image name): ``img/imgNNNN`` with ``label/labelNNNN``."""
    training = btcv_training(folder)
    if training is None:
        raise InputError(folder, "not a BTCV folder: expected img/ and label/ here, in Training/ or in "
                                 "RawData/Training/")
    cases = []
    for image in sorted((training / "img").glob("img*.nii*")):
        label = training / "label" / ("label" + image.name[len("img"):])
        cases.append((str(image), str(label)))
    if not cases:
        raise InputError(training / "img", "no images named imgNNNN.nii.gz")
    return training, cases


def list_abdomenct1k(folder: Path) -> list[Listed]:
    """Cases sorted by mask name: ``Mask/Case_NNNNN`` with the part's ``Case_NNNNN_0000``."""
    if not is_abdomenct1k(folder):
        raise InputError(folder, f"not an AbdomenCT-1K folder: expected Mask/ and {ABDOMENCT1K_PARTS}/ here")
    images = {p.name: p for part in sorted(folder.glob(ABDOMENCT1K_PARTS)) for p in part.glob("Case_*_0000.nii*")}
    cases = []
    for mask in sorted((folder / "Mask").glob("Case_*.nii*")):
        stem, _, ext = mask.name.partition(".")
        image = images.get(f"{stem}_0000.{ext}")
        if image is not None:
            cases.append((str(image), str(mask)))
    if not cases:
        raise InputError(folder / "Mask", "no mask Case_NNNNN.nii.gz has its image in an image part present")
    return cases
