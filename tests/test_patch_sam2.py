"""SAM2 under the patch protocols, end to end through ``annosim run`` (issue 19).

A random-weight SAM2.1 Hiera-tiny (torch seed 0) saved as an official checkpoint runs at
image_size 64 (the smallest Sam2Options accepts; tests/test_sam2_model.py checks the adapter
against the official predictor at 256) with ``--model-arg patch_size=32``, so each click
propagates over 32 frames instead of 128. Case: the sample CT's spleen (3 mm voxels, resampled
to the patch's 1.5 mm). The rounds are replayed by hand from the model's ``predict_patch`` on
the same patch, with the clicks the source's rules draw (``../shared/reference/
protocol-sources.md`` 7A.2 / 7B: IU L384-385 seed 233 and random clicks, VA L43-50 seed 2023,
VA L249-250 ritm clicks, VA L253-273 newest click only) and pasted back by PatchGeometry.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sam2")

from annosim.cli import main  # noqa: E402
from annosim.data.orientation import canonical_to_ras, ras_points_to_canonical, ras_to_canonical  # noqa: E402
from annosim.models.sam2_checkpoints import build_video_predictor  # noqa: E402
from annosim.models.sam2_model import SAM2Model  # noqa: E402
from annosim.protocols.patch import PatchGeometry  # noqa: E402
from annosim.protocols.sammed3d_rules import random_click, ritm_click  # noqa: E402

CONFIG = "configs/sam2.1/sam2.1_hiera_t.yaml"
SIZE = 64
PATCH = 32
SPLEEN = 1
CLICKS = 2


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random-weight SAM2.1 Hiera-tiny, saved like an official checkpoint."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "sam21_tiny_random.pt"
    torch.save({"model": build_video_predictor(CONFIG, SIZE).state_dict()}, path)
    return path


def _pair(shared_data: Path) -> str:
    d = shared_data / "totalseg-abdomen"
    return f"{d / 'ct.nii.gz'} {d / 'seg.nii.gz'}"


def _args(shared_data: Path, checkpoint: Path, out: Path, patch: str = str(PATCH)) -> list[str]:
    return ["run", "--data", _pair(shared_data), "--labels", "spleen", "--model", "sam2.1-hiera-tiny",
            "--checkpoint", str(checkpoint), "--model-arg", f"image_size={SIZE}", "--model-arg", "device=cpu",
            "--model-arg", f"patch_size={patch}", "--protocol", "sammed3d,sammed3d-2024",
            "--protocol-arg", f"sammed3d.clicks={CLICKS}", "--protocol-arg", f"sammed3d-2024.clicks={CLICKS}",
            "--settings", "full", "--save-predictions", "--out", str(out), "--quiet"]


@pytest.fixture(scope="module")
def run_dir(shared_data: Path, checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Both patch protocols, 2 clicks each, through the CLI (one torch thread)."""
    out = tmp_path_factory.mktemp("patch_sam2") / "run"
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(_args(shared_data, checkpoint, out)) == 0
    finally:
        torch.set_num_threads(before)
    return out


def _rows(out: Path) -> list[dict[str, str]]:
    with open(out / "rounds.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_rows_rounds_and_native_columns(run_dir: Path) -> None:
    """One row per click (rounds 1..2, clicks cumulative); 7A's case-grid sammed3d_dsc equals
    annosim's Dice in the full setting, 7B's crop scores carry 4 decimals (VA L274-283); the other
    protocol's native columns are nan."""
    rows = _rows(run_dir)
    assert [(r["protocol"], r["round"], r["clicks"]) for r in rows] == [
        (p, str(k), str(k)) for p in ("sammed3d", "sammed3d-2024") for k in (1, 2)]
    for r in rows:
        assert r["label_name"] == "spleen" and r["setting"] == "full" and 0.0 <= float(r["dice"]) <= 1.0
        if r["protocol"] == "sammed3d":
            assert float(r["sammed3d_dsc"]) == float(r["dice"]) and 0.0 <= float(r["sammed3d_nsd"]) <= 1.0
            assert r["sammed3d_crop_dice"] == r["sammed3d_crop_iou"] == "nan"
        else:
            crop = float(r["sammed3d_crop_dice"]), float(r["sammed3d_crop_iou"])
            assert all(0.0 <= v <= 1.0 and v == round(v, 4) for v in crop) and crop[1] <= crop[0]
            assert r["sammed3d_dsc"] == r["sammed3d_nsd"] == "nan"
    run = json.loads((run_dir / "run.json").read_text())
    assert run["model"]["args"]["patch_size"] == str(PATCH)
    assert run["model_info"]["patch"] == {"size": [PATCH] * 3, "spacing": [1.5] * 3}


def _replay(model: SAM2Model, case, protocol: str) -> tuple[PatchGeometry, list, list[np.ndarray]]:
    """The rounds of ``protocol`` recomputed from ``predict_patch``: (geometry, clicks in RAS
    patch indices, canonical case-grid masks)."""
    gt = canonical_to_ras(case.label == SPLEEN)
    geo, gt_patch = PatchGeometry.around(gt, tuple(case.spacing)[::-1], (1.5,) * 3, (PATCH,) * 3)
    assert gt_patch.any()
    image = geo.image(canonical_to_ras(case.image))
    if protocol == "sammed3d-2024":
        image = np.clip(image, -1000.0, 1000.0)  # DL L51-52
    model.set_patch(np.ascontiguousarray(ras_to_canonical(image)))
    rs = np.random.RandomState(233 if protocol == "sammed3d" else 2023)
    mask, low_res, clicks, pasted = np.zeros(gt_patch.shape, bool), None, [], []
    for k in range(1, CLICKS + 1):
        if protocol == "sammed3d":
            click = random_click(mask, gt_patch, rs, fallback=True)
        else:
            click = (ritm_click if k <= 2 else random_click)(mask, gt_patch, rs, fallback=False)
        assert click is not None
        clicks.append(click)
        sent = clicks if protocol == "sammed3d" else clicks[-1:]
        zyx = ras_points_to_canonical(np.array([c[0] for c in sent]), geo.size)
        out = model.predict_patch(zyx, np.array([int(c[1]) for c in sent]), low_res)
        low_res = out.low_res
        mask = canonical_to_ras(out.logits) > 0
        pasted.append(ras_to_canonical(geo.paste(mask)))
    return geo, clicks, pasted


@pytest.mark.parametrize("protocol", ["sammed3d", "sammed3d-2024"])
def test_pasted_masks_are_predict_patch_pasted_inside_the_window(run_dir: Path, shared_data: Path,
                                                                 checkpoint: Path, protocol: str) -> None:
    """Every saved round equals predict_patch on the same patch and clicks, pasted back; it
    lies inside the patch window; the recorded click is the case voxel of the patch click."""
    from annosim.data.layouts import open_dataset

    case = open_dataset(_pair(shared_data)).cases[0].load()
    model = SAM2Model("sam2.1-hiera-tiny", checkpoint=str(checkpoint), image_size=str(SIZE), device="cpu",
                      patch_size=str(PATCH))
    model.set_volume(case.image, case.spacing)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        geo, clicks, pasted = _replay(model, case, protocol)
    finally:
        torch.set_num_threads(before)
    window = ras_to_canonical(geo.paste(np.ones(geo.size, bool)))
    assert window.sum() == 16 * 16 * 16  # 32 voxels of 1.5 mm = 16 case voxels of 3 mm per axis
    with np.load(run_dir / "predictions" / "ct" / f"{protocol}__{SPLEEN}__full.npz") as npz:
        saved = [npz[f"round_{k}"] for k in range(1, CLICKS + 1)]
    prompts = [json.loads(line) for line in (run_dir / "prompts.jsonl").read_text().splitlines()]
    prompts = [p for p in prompts if p["protocol"] == protocol]
    for k in range(CLICKS):
        assert saved[k].shape == case.label.shape and not (saved[k] & ~window).any()
        assert np.array_equal(saved[k], pasted[k])
        point = ras_points_to_canonical(np.array([geo.case_point(clicks[k][0])]), geo.shape)[0]
        assert (prompts[k]["z"], prompts[k]["y"], prompts[k]["x"], prompts[k]["positive"]) == (
            *(int(v) for v in point), bool(clicks[k][1]))


def test_changed_patch_size_is_refused_on_resume_and_bad_ones_before_any_work(
        run_dir: Path, shared_data: Path, checkpoint: Path, tmp_path: Path, capsys) -> None:
    """patch_size is part of the run's model arguments: another value on the same folder is
    refused; a bad value is a one-line error (exit 2) with nothing created."""
    capsys.readouterr()
    assert main(_args(shared_data, checkpoint, run_dir, patch="16")) == 2
    err = capsys.readouterr().err
    assert "patch_size" in err and "16" in err
    out = tmp_path / "bad"
    for bad, says in (("0", "patch_size must be 1 or 3 positive integers, got '0'"),
                      ("32,32", "patch_size must be 1 or 3 positive integers, got '32,32'"),
                      ("x", "parameter patch_size='x'")):
        assert main(_args(shared_data, checkpoint, out, patch=bad)) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and "model 'sam2'" in lines[0] and says in lines[0] and not out.exists()


def test_patch_args_set_the_spec_and_describe() -> None:
    """One value or Z,Y,X; spacing in mm; recorded in describe() (SAM2's own options untouched)."""
    model = SAM2Model.__new__(SAM2Model)
    rest = model._take_patch_args({"patch_size": "16,32,48", "patch_spacing": "3", "window": "-100,100"},
                                  "model 'sam2'")
    assert rest == {"window": "-100,100"}
    assert (model.patch_spec.size, model.patch_spec.spacing, model.patch_spec.intensity) == (
        (16, 32, 48), (3.0, 3.0, 3.0), "hu")
    assert model.patch_description() == {"patch": {"size": [16, 32, 48], "spacing": [3.0, 3.0, 3.0]}}
    assert SAM2Model.patch_spec.size == (128, 128, 128) and SAM2Model.patch_spec.spacing == (1.5, 1.5, 1.5)


def test_radioactive_3d_prompters_run_sam2_end_to_end(shared_data: Path, checkpoint: Path, tmp_path: Path) -> None:
    """RadioActive's 3D cropped prompters (protocol-sources.md section 8, "3D prompters"; IP
    L364-380 one refinement point a step, no early stop) with the random-weight SAM2 on a 32^3
    patch, 1 refinement: 2 rounds per protocol (initial point, then one corrective point), the
    clicks cumulative 1, 2, each round's Dice in [0, 1]."""
    out = tmp_path / "run"
    args = ["run", "--data", _pair(shared_data), "--labels", "spleen", "--model", "sam2.1-hiera-tiny",
            "--checkpoint", str(checkpoint), "--model-arg", f"image_size={SIZE}", "--model-arg", "device=cpu",
            "--model-arg", f"patch_size={PATCH}", "--protocol",
            "radioactive-3d-point,radioactive-3d-center,radioactive-3d-center-2dalgo",
            "--protocol-arg", "radioactive-3d-point.refinements=1",
            "--protocol-arg", "radioactive-3d-center.refinements=1",
            "--protocol-arg", "radioactive-3d-center-2dalgo.refinements=1",
            "--settings", "full", "--out", str(out), "--quiet"]
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(args) == 0
    finally:
        torch.set_num_threads(before)
    rows = _rows(out)
    got = sorted((r["protocol"], int(r["round"]), int(r["clicks"])) for r in rows)
    assert got == [("radioactive-3d-center", 1, 1), ("radioactive-3d-center", 2, 2),
                   ("radioactive-3d-center-2dalgo", 1, 1), ("radioactive-3d-center-2dalgo", 2, 2),
                   ("radioactive-3d-point", 1, 1), ("radioactive-3d-point", 2, 2)]
    for r in rows:
        assert 0.0 <= float(r["dice"]) <= 1.0
