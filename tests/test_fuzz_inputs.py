"""Malformed input, many kinds in one run: a CSV manifest lists 39 bad cases and 2 good ones.

Every bad case must become exactly one line of errors.jsonl naming its file and the problem,
the good cases must complete, the run must exit 1 and print no traceback. The inputs are tiny
synthetic volumes (16 x 16 x 6 voxels) written here, so the run takes a few seconds.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from annosim.cli import main
from annosim.results import read_jsonl, read_rounds

TESTS = Path(__file__).resolve().parent
PLUGIN = f"{TESTS / 'plugin_models.py'}:ThresholdGrow"
SHAPE = (16, 16, 6)
AFFINE = np.diag([2.0, 2.0, 3.0, 1.0])


def good_arrays() -> tuple[np.ndarray, np.ndarray]:
    """A bright 6x6x4 box (HU 200, value 1) in a dark volume (HU -500), stored (I, J, K)."""
    img = np.full(SHAPE, -500.0, dtype=np.float32)
    lab = np.zeros(SHAPE, dtype=np.uint8)
    img[4:10, 5:11, 1:5] = 200.0
    lab[4:10, 5:11, 1:5] = 1
    return img, lab


def save(path: Path, data: np.ndarray, affine: np.ndarray = AFFINE) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, affine, dtype=data.dtype), str(path))
    return path.name


def build_dataset(root: Path) -> tuple[Path, dict[str, tuple[str, str]], list[str]]:
    """Write the inputs under ``root``; returns (manifest, {bad case: (file named, problem text)},
    good case ids). Paths in the manifest are relative to ``root``."""
    img, lab = good_arrays()
    good_img, good_lab = root / "good" / "ct.nii.gz", root / "good" / "seg.nii.gz"
    save(good_img, img)
    save(good_lab, lab)
    rows: list[tuple[str, str, str]] = []  # image, label, case
    expect: dict[str, tuple[str, str]] = {}
    bad = root / "bad"
    bad.mkdir()

    def case(cid: str, image: Path | str, label: Path | str, named: Path | str, problem: str) -> None:
        rows.append((os.path.relpath(image, root), os.path.relpath(label, root), cid))
        expect[cid] = (Path(named).name, problem)

    def bad_image(cid: str, path: Path, problem: str) -> None:
        case(cid, path, good_lab, path, problem)

    def bad_label(cid: str, path: Path, problem: str) -> None:
        case(cid, good_img, path, path, problem)

    raw = good_img.read_bytes()
    # truncated and corrupt files
    (bad / "trunc_img.nii.gz").write_bytes(raw[:-12])  # header intact, voxels cut short
    bad_image("trunc-gzip-image", bad / "trunc_img.nii.gz", "truncated")
    lab_raw = good_lab.read_bytes()
    (bad / "trunc_seg.nii.gz").write_bytes(lab_raw[:-12])
    bad_label("trunc-gzip-label", bad / "trunc_seg.nii.gz", "truncated")
    (bad / "trunc_header.nii.gz").write_bytes(raw[:40])  # not even the header
    bad_image("trunc-gzip-header", bad / "trunc_header.nii.gz", "cannot read image")
    plain = gzip.decompress(raw)
    (bad / "trunc_plain.nii").write_bytes(plain[: 352 + 100])
    bad_image("trunc-nii", bad / "trunc_plain.nii", "truncated")
    (bad / "garbage_inside.nii.gz").write_bytes(gzip.compress(os.urandom(2000)))
    bad_image("gzip-of-garbage", bad / "garbage_inside.nii.gz", "cannot read image")
    (bad / "random.nii").write_bytes(os.urandom(500))
    bad_image("random-bytes", bad / "random.nii", "cannot read image")
    header = bytearray(plain)
    header[40:42] = np.int16(9).tobytes()  # dim[0] = 9: more dimensions than NIfTI allows
    (bad / "bad_dim0.nii").write_bytes(bytes(header))
    bad_image("bad-header-dim", bad / "bad_dim0.nii", "cannot read image")
    # empty files, text and JSON where an image belongs
    (bad / "empty.nii.gz").write_bytes(b"")
    bad_image("empty-nii-gz", bad / "empty.nii.gz", "cannot read image")
    (bad / "empty.nrrd").write_bytes(b"")
    bad_image("empty-nrrd", bad / "empty.nrrd", "cannot read image")
    (bad / "json_in_disguise.nii.gz").write_text(json.dumps({"image": "ct.nii.gz"}))
    bad_image("json-named-nii", bad / "json_in_disguise.nii.gz", "cannot read image")
    (bad / "plain.json").write_text(json.dumps({"labels": {"1": "liver"}}))
    bad_image("json-as-image", bad / "plain.json", "cannot read image")
    (bad / "notes.mha").write_text("this is not an image\n")
    bad_image("text-as-mha", bad / "notes.mha", "cannot read image")
    # wrong dimensions
    save(bad / "img2d.nii.gz", img[:, :, 0])
    bad_image("image-2d", bad / "img2d.nii.gz", "2D")
    save(bad / "img4d.nii.gz", np.stack([img, img], axis=-1))
    bad_image("image-4d", bad / "img4d.nii.gz", "4D")
    save(bad / "seg2d.nii.gz", lab[:, :, 0])
    bad_label("label-2d", bad / "seg2d.nii.gz", "2D")
    save(bad / "seg4d.nii.gz", np.stack([lab, lab], axis=-1))
    bad_label("label-4d", bad / "seg4d.nii.gz", "4D")
    # bad voxel values
    nan_img = img.copy()
    nan_img[0, 0, 0] = np.nan
    save(bad / "img_nan.nii.gz", nan_img)
    bad_image("image-nan", bad / "img_nan.nii.gz", "NaN")
    inf_img = img.copy()
    inf_img[1, 2, 3] = np.inf
    save(bad / "img_inf.nii.gz", inf_img)
    bad_image("image-inf", bad / "img_inf.nii.gz", "infinite")
    nan_lab = lab.astype(np.float32)
    nan_lab[0, 0, 0] = np.nan
    save(bad / "seg_nan.nii.gz", nan_lab)
    bad_label("label-nan", bad / "seg_nan.nii.gz", "NaN")
    huge = lab.astype(np.int64) * (2**31)
    save(bad / "seg_huge.nii.gz", huge)
    bad_label("label-2^31", bad / "seg_huge.nii.gz", "too large")
    save(bad / "seg_huge_float.nii.gz", lab.astype(np.float64) * 1e20)
    bad_label("label-1e20", bad / "seg_huge_float.nii.gz", "too large")
    save(bad / "seg_negative.nii.gz", lab.astype(np.int16) * -3)
    bad_label("label-negative", bad / "seg_negative.nii.gz", "negative")
    save(bad / "seg_float.nii.gz", lab.astype(np.float32) * 0.5)
    bad_label("label-float", bad / "seg_float.nii.gz", "not integers")
    save(bad / "seg_none.nii.gz", np.zeros(SHAPE, np.uint8))
    bad_label("label-map-empty", bad / "seg_none.nii.gz", "no labels")
    # grids that do not match the image
    save(bad / "seg_shape.nii.gz", lab[:, :, :5])
    bad_label("grid-shape", bad / "seg_shape.nii.gz", "does not match")
    save(bad / "seg_spacing.nii.gz", lab, np.diag([2.0, 2.0, 2.5, 1.0]))
    bad_label("grid-spacing", bad / "seg_spacing.nii.gz", "does not match")
    shifted = AFFINE.copy()
    shifted[:3, 3] = (10.0, 0.0, 0.0)
    save(bad / "seg_origin.nii.gz", lab, shifted)
    bad_label("grid-origin", bad / "seg_origin.nii.gz", "does not match")
    save(bad / "seg_direction.nii.gz", lab, np.diag([-2.0, 2.0, 3.0, 1.0]))
    bad_label("grid-direction", bad / "seg_direction.nii.gz", "does not match")
    # things that are not files, or not there
    (bad / "empty_dir").mkdir()
    bad_image("empty-folder-image", bad / "empty_dir", "no DICOM series")
    (bad / "dir_seg.nii.gz").mkdir()
    (bad / "dir_seg.nii.gz" / "readme.txt").write_text("a folder where a label file belongs")
    bad_label("folder-as-label", bad / "dir_seg.nii.gz", "no DICOM series")
    (bad / "dangling.nii.gz").symlink_to(bad / "nowhere.nii.gz")
    bad_image("broken-symlink", bad / "dangling.nii.gz", "not found")
    (bad / "loop_a.nii.gz").symlink_to(bad / "loop_b.nii.gz")
    (bad / "loop_b.nii.gz").symlink_to(bad / "loop_a.nii.gz")
    bad_image("symlink-loop", bad / "loop_a.nii.gz", "cannot access")
    os.mkfifo(bad / "pipe.nii.gz")
    bad_image("fifo-image", bad / "pipe.nii.gz", "FIFO")
    os.mkfifo(bad / "pipe_seg.nii.gz")
    bad_label("fifo-label", bad / "pipe_seg.nii.gz", "FIFO")
    bad_image("missing-image", bad / "absent.nii.gz", "not found")
    bad_label("missing-label", bad / "absent_seg.nii.gz", "not found")
    # a two-component (vector) image
    import SimpleITK as sitk

    vec = sitk.GetImageFromArray(np.zeros((6, 16, 16, 2), np.float32), isVector=True)
    sitk.WriteImage(vec, str(bad / "vector.nrrd"))
    bad_image("vector-image", bad / "vector.nrrd", "components")
    # non-ASCII names: a bad one and (below) a good one
    uni = bad / "données_ñ"
    uni.mkdir()
    (uni / "tête.nii.gz").write_bytes(raw[:-12])
    bad_image("non-ascii-truncated", uni / "tête.nii.gz", "truncated")
    nonascii_good = root / "gut_ü" / "bauch_ß.nii.gz"
    save(nonascii_good, img)
    rows.append((os.path.relpath(nonascii_good, root), os.path.relpath(good_lab, root), "good-ünicode"))
    rows.append((os.path.relpath(good_img, root), os.path.relpath(good_lab, root), "good"))
    manifest = root / "cases.csv"
    manifest.write_text("image,label,case\n" + "".join(f"{i},{l},{c}\n" for i, l, c in rows), encoding="utf-8")
    return manifest, expect, ["good-ünicode", "good"]


@pytest.fixture(scope="module")
def fuzz_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    manifest, expect, good = build_dataset(root / "data")
    return root / "out", manifest, expect, good


def test_at_least_30_kinds_of_bad_input(fuzz_run):
    _, _, expect, _ = fuzz_run
    assert len(expect) >= 30


def check_run(out: Path, expect: dict[str, tuple[str, str]], good: list[str], code: int, err: str) -> None:
    """Exit 1, no traceback, one error line per bad case naming file and problem, good cases done."""
    assert code == 1
    assert "Traceback" not in err
    errors = read_jsonl(out / "errors.jsonl")
    by_case: dict[str, list[dict]] = {}
    for e in errors:
        by_case.setdefault(e["case"], []).append(e)
    assert set(by_case) == set(expect), "bad cases without an error line, or good cases with one"
    for cid, (named, problem) in expect.items():
        lines = by_case[cid]
        assert len(lines) == 1, (cid, lines)
        text = lines[0]["error"]
        assert "\n" not in text and named in text and problem in text, (cid, text)
    rows = read_rounds(out)
    assert {r["case"] for r in rows} == set(good)
    for cid in good:
        dice = [float(r["dice"]) for r in rows if r["case"] == cid]
        assert 1 <= len(dice) <= 8 and max(dice) == 1.0  # the box is found exactly
    # the printed lines are one per bad case too (names may be non-ASCII)
    assert sum(1 for line in err.splitlines() if line.startswith("annosim: ")) == len(expect)


def test_every_bad_case_is_one_clear_line_and_good_cases_complete(fuzz_run, capsys):
    out, manifest, expect, good = fuzz_run
    code = main(["run", "--data", str(manifest), "--model", PLUGIN, "--out", str(out), "--quiet",
                 "--settings", "fg-only"])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out
    check_run(out, expect, good, code, captured.err)


def test_the_same_under_two_workers(fuzz_run, tmp_path, capsys):
    _, manifest, expect, good = fuzz_run
    out = tmp_path / "workers"
    code = main(["run", "--data", str(manifest), "--model", PLUGIN, "--out", str(out), "--quiet",
                 "--settings", "fg-only", "--workers", "2"])
    check_run(out, expect, good, code, capsys.readouterr().err)
