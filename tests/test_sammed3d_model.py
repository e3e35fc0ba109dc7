"""sam-med3d-turbo through medim with a randomly initialised network saved in the layout medim's
loader reads ({"model_state_dict": ...}); a small one (32^3 patch, 2 blocks: under a second on
the CPU, where one 128^3 turbo encoder pass takes about 20 s). Prompt conversion is checked on
the tensors the network receives (uni-medical/SAM-Med3D utils/infer_utils.py @f3de1fa L110-181)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
medim = pytest.importorskip("medim")

from annosim.data.case import Case  # noqa: E402
from annosim.engine.case import evaluate_case  # noqa: E402
from annosim.errors import ConfigError, InputError  # noqa: E402
from annosim.metrics.registry import MetricSet  # noqa: E402
from annosim.models.registry import load_model  # noqa: E402
from annosim.models.sammed3d_model import SamMed3DModel  # noqa: E402

SMALL = dict(image_size=32, encoder_embed_dim=48, encoder_depth=2, encoder_num_heads=2,
             encoder_global_attn_indexes=[1], prompt_embed_dim=48)


@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        net = medim.create_model("SAM-Med3D", pretrained=False, **SMALL)
    path = tmp_path_factory.mktemp("sammed3d") / "sam_med3d_small.pth"
    torch.save({"model_state_dict": net.state_dict(), "epoch": 3}, path)
    return path


@pytest.fixture()
def model(small_checkpoint, one_torch_thread):
    return SamMed3DModel(checkpoint=str(small_checkpoint), device="cpu")


def test_architecture_is_read_from_the_checkpoint(model):
    """Patch size, width, depth, heads and global blocks from the tensor shapes: 32^3 at 1.5 mm."""
    enc = model.network.image_encoder
    assert model.patch_spec.size == (32, 32, 32) and model.patch_spec.spacing == (1.5, 1.5, 1.5)
    assert len(enc.blocks) == 2 and enc.blocks[0].window_size == 14 and enc.blocks[1].window_size == 0
    assert enc.blocks[0].attn.num_heads == 2


def test_network_receives_the_ras_patch_and_ras_points(model):
    """IU L110-152: the encoder gets the (1, 1, i, j, k) tensor, the prompt encoder points as
    (i, j, k) indices (torch.argwhere of the RAS tensor) and the low-res logits (zeros at first)."""
    seen = {}
    model.network.image_encoder.register_forward_pre_hook(lambda m, a: seen.setdefault("x", a[0].clone()))
    model.network.prompt_encoder.register_forward_pre_hook(
        lambda m, a, kw: seen.__setitem__("prompt", kw), with_kwargs=True)
    patch = np.random.default_rng(0).normal(size=(32, 32, 32)).astype(np.float32)
    model.set_patch(patch)
    np.testing.assert_array_equal(seen["x"][0, 0].numpy(), patch[:, ::-1, ::-1].transpose(2, 1, 0))
    out = model.predict_patch(np.array([[3, 4, 5], [10, 0, 31]]), np.array([1, 0]))
    coords, labels = seen["prompt"]["points"]
    assert coords.tolist() == [[[26.0, 27.0, 3.0], [0.0, 31.0, 10.0]]]  # (31 - x, 31 - y, z)
    assert labels.tolist() == [[1, 0]] and not seen["prompt"]["masks"].any()
    assert tuple(seen["prompt"]["masks"].shape) == (1, 1, 8, 8, 8)
    model.predict_patch(np.array([[3, 4, 5]]), np.array([1]), out.low_res)
    np.testing.assert_array_equal(seen["prompt"]["masks"].numpy(), out.low_res)  # handed back unchanged


def test_logits_are_the_upsampled_low_res_in_canonical_axes(model):
    """IU L163-177: trilinear (align_corners=False) upsampling of the decoder's low-res logits."""
    import torch.nn.functional as F

    patch = np.random.default_rng(1).normal(size=(32, 32, 32)).astype(np.float32)
    model.set_patch(patch)
    out = model.predict_patch(np.array([[16, 16, 16]]), np.array([1]))
    up = F.interpolate(torch.from_numpy(out.low_res), size=(32, 32, 32), mode="trilinear", align_corners=False)
    np.testing.assert_allclose(out.logits, up[0, 0].numpy().transpose(2, 1, 0)[:, ::-1, ::-1], atol=1e-6)
    assert out.logits.shape == (32, 32, 32) and out.logits.dtype == np.float32


def test_loading_errors_are_one_line_naming_the_file(small_checkpoint, tmp_path):
    with pytest.raises(ConfigError, match="needs --checkpoint"):
        SamMed3DModel()
    with pytest.raises(InputError, match="checkpoint file not found"):
        SamMed3DModel(checkpoint=str(tmp_path / "none.pth"))
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="not a loadable checkpoint"):
        SamMed3DModel(checkpoint=str(bad))
    state = torch.load(small_checkpoint, weights_only=True)["model_state_dict"]
    del state["mask_decoder.iou_token.weight"]
    partial = tmp_path / "partial.pth"
    torch.save({"model_state_dict": state}, partial)
    with pytest.raises(InputError, match=r"partial.pth: SAM-Med3D state dict lacks 1 tensors, e.g. mask_decoder"):
        SamMed3DModel(checkpoint=str(partial))
    other = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(1)}, other)
    with pytest.raises(InputError, match="no image_encoder.pos_embed"):
        SamMed3DModel(checkpoint=str(other))


def test_registered_and_runs_sammed3d_end_to_end(small_checkpoint, one_torch_thread):
    """The built-in name with --checkpoint; both protocols run on a synthetic case."""
    m = load_model("sam-med3d-turbo", {"checkpoint": str(small_checkpoint), "device": "cpu"})
    rng = np.random.default_rng(0)
    img = np.full((8, 32, 32), 40.0, np.float32) + rng.normal(0, 5, (8, 32, 32)).astype(np.float32)
    lab = np.zeros(img.shape, np.uint8)
    lab[2:6, 8:20, 8:18] = 1
    img[lab == 1] += 160.0
    case = Case("syn", img, lab, (1.5, 1.0, 1.0), {1: "box"})
    ms = MetricSet.with_user(native=("sammed3d_dsc", "sammed3d_nsd", "sammed3d_crop_dice", "sammed3d_crop_iou"))
    res = evaluate_case(case, m, ["sammed3d", "sammed3d-2024"], settings=("full",), metrics=ms)
    assert res.errors == []
    assert {r["protocol"] for r in res.rows} == {"sammed3d", "sammed3d-2024"}
    assert all(0.0 <= r["dice"] <= 1.0 for r in res.rows)


def test_cli_refuses_bad_checkpoint_and_slice_protocols_before_any_work(synthetic_manifest, small_checkpoint,
                                                                          tmp_path, capsys):
    """Exit 2, one line, no results folder: a corrupt checkpoint; a slice protocol (he2024 needs
    add_clicks, which a patch model lacks)."""
    from annosim.cli import main

    bad = tmp_path / "junk.pth"
    bad.write_bytes(bytes(range(256)) * 4)
    out = tmp_path / "run"
    assert main(["run", "--data", str(synthetic_manifest), "--model", "sam-med3d-turbo", "--checkpoint", str(bad),
                 "--protocol", "sammed3d", "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{bad}: not a loadable checkpoint (1024 bytes" in err[0] and not out.exists()
    assert main(["run", "--data", str(synthetic_manifest), "--model", "sam-med3d-turbo", "--checkpoint",
                 str(small_checkpoint), "--protocol", "he2024", "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "add_clicks" in err[0] and not out.exists()


def test_sample_ct_end_to_end(shared_data, small_checkpoint, one_torch_thread):
    """Both protocols on the sample CT (spleen) with the random-weight network (32^3 patch)."""
    from annosim.data.layouts import open_dataset

    d = shared_data / "totalseg-abdomen"
    case = open_dataset(f"{d / 'ct.nii.gz'} {d / 'seg.nii.gz'}").cases[0].load()
    m = SamMed3DModel(checkpoint=str(small_checkpoint), device="cpu")
    ms = MetricSet.with_user(native=("sammed3d_dsc", "sammed3d_nsd", "sammed3d_crop_dice", "sammed3d_crop_iou"))
    res = evaluate_case(case, m, ["sammed3d", "sammed3d-2024"], settings=("full", "fg-only"), labels=[1], metrics=ms)
    assert res.errors == []
    assert {(r["protocol"], r["setting"]) for r in res.rows} == {
        (p, s) for p in ("sammed3d", "sammed3d-2024") for s in ("full", "fg-only")}


def test_sample_ct_radioactive_3d_prompters(shared_data, small_checkpoint, one_torch_thread):
    """RadioActive's three 3D cropped prompters (protocol-sources.md section 8) on the sample
    CT's spleen with the random-weight network, 2 refinements each: rounds 1..n in order
    (n <= 3; fewer only where no voxel is misclassified), one click per round, Dice in [0, 1]."""
    from annosim.data.layouts import open_dataset
    from annosim.protocols.registry import get_protocol

    d = shared_data / "totalseg-abdomen"
    case = open_dataset(f"{d / 'ct.nii.gz'} {d / 'seg.nii.gz'}").cases[0].load()
    m = SamMed3DModel(checkpoint=str(small_checkpoint), device="cpu")
    names = ("radioactive-3d-point", "radioactive-3d-center", "radioactive-3d-center-2dalgo")
    res = evaluate_case(case, m, [get_protocol(n, refinements=2) for n in names], settings=("full",), labels=[1])
    assert res.errors == []
    for n in names:
        rows = [r for r in res.rows if r["protocol"] == n]
        assert 1 <= len(rows) <= 3 and [r["round"] for r in rows] == list(range(1, len(rows) + 1))
        assert [r["clicks"] for r in rows] == list(range(1, len(rows) + 1))
        assert all(0.0 <= r["dice"] <= 1.0 for r in rows)
