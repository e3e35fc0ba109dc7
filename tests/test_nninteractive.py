"""nnInteractive adapter: a random-weight checkpoint folder in the layout the session loads,
prompt conversion checked on the network's input, boxes, replace, and he2024 end to end."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("nnInteractive.inference.inference_session")

from annosim.errors import ConfigError, InputError  # noqa: E402
from annosim.models.nninteractive_model import NNInteractiveModel  # noqa: E402

SPLEEN = 1
PATCH = (64, 64, 64)  # the session's refinement needs > 2 x 24 voxels of margin per axis


class NotWeights:
    """An arbitrary object: the adapter must refuse a checkpoint holding it."""


def write_checkpoint_folder(folder: Path, weights: dict | None = None) -> Path:
    """A tiny nnU-Net PlainConvUNet in nnInteractive's model-folder layout, random weights."""
    from nnInteractive.trainer.nnInteractiveTrainer import nnInteractiveTrainer_stub
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    arch = {
        "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
        "arch_kwargs": {
            "n_stages": 3,
            "features_per_stage": [4, 8, 16],
            "conv_op": "torch.nn.modules.conv.Conv3d",
            "kernel_sizes": [[3, 3, 3]] * 3,
            "strides": [[1, 1, 1], [2, 2, 2], [2, 2, 2]],
            "n_conv_per_stage": [1, 1, 1],
            "n_conv_per_stage_decoder": [1, 1],
            "conv_bias": True,
            "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
            "norm_op_kwargs": {"eps": 1e-5, "affine": True},
            "dropout_op": None,
            "dropout_op_kwargs": None,
            "nonlin": "torch.nn.LeakyReLU",
            "nonlin_kwargs": {"inplace": True},
        },
        "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
    }
    plans = {
        "dataset_name": "Dataset999_annosimTest",
        "plans_name": "nnUNetPlans",
        "original_median_spacing_after_transp": [3.0, 3.0, 3.0],
        "original_median_shape_after_transp": [30, 64, 64],
        "image_reader_writer": "SimpleITKIO",
        "transpose_forward": [0, 1, 2],
        "transpose_backward": [0, 1, 2],
        "configurations": {
            "3d_tiny": {
                "data_identifier": "tiny",
                "preprocessor_name": "DefaultPreprocessor",
                "batch_size": 1,
                "patch_size": list(PATCH),
                "median_image_size_in_voxels": [30, 64, 64],
                "spacing": [3.0, 3.0, 3.0],
                "normalization_schemes": ["ZScoreNormalization"],
                "use_mask_for_norm": [False],
                "architecture": arch,
            }
        },
        "foreground_intensity_properties_per_channel": {},
    }
    dataset = {"channel_names": {"0": "CT"}, "labels": {"background": 0, "object": 1}, "numTraining": 0}
    # 6 interaction channels + the previous segmentation = 7; the legacy channel mapping
    info = {"point_radius": 2, "interaction_channels": 6}
    folder.mkdir(parents=True, exist_ok=True)
    for name, obj in (("plans.json", plans), ("dataset.json", dataset), ("inference_info.json", info)):
        (folder / name).write_text(json.dumps(obj))
    pm = PlansManager(plans)
    net = nnInteractiveTrainer_stub.build_network_architecture(
        pm, pm.get_configuration("3d_tiny"), 1 + 7, 2, enable_deep_supervision=False
    )
    (folder / "fold_0").mkdir(exist_ok=True)
    ckpt = {
        "network_weights": net.state_dict() if weights is None else weights,
        "trainer_name": "nnInteractiveTrainer_stub",
        "init_args": {"configuration": "3d_tiny"},
    }
    torch.save(ckpt, folder / "fold_0" / "checkpoint_final.pth")
    return folder


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_torch_thread):
    """Small 3D convolutions run ~10x faster on one thread on a shared 2-core runner."""


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    return write_checkpoint_folder(tmp_path_factory.mktemp("nninteractive") / "model")


@pytest.fixture(scope="module")
def case(shared_data: Path):
    """totalseg-abdomen cropped around the spleen: (30, 64, 64) voxels of 3 mm."""
    from annosim.data.layouts import open_dataset

    src = shared_data / "totalseg-abdomen"
    full = open_dataset(f"{src / 'ct.nii.gz'} {src / 'seg.nii.gz'}").cases[0].load()
    crop = (slice(None), slice(32, 96), slice(58, 122))
    return dataclasses.replace(full, image=full.image[crop].copy(), label=full.label[crop].copy())


def make_model(folder: Path) -> NNInteractiveModel:
    # AutoZoom off: random weights change the patch border on every click, which would zoom out
    # and refine over the whole volume (tens of forward passes per click on the CPU)
    return NNInteractiveModel(checkpoint=str(folder), device="cpu", autozoom="false")


def record_inputs(model: NNInteractiveModel) -> tuple[list[torch.Tensor], object]:
    seen: list[torch.Tensor] = []
    handle = model.session.network.register_forward_pre_hook(lambda mod, args: seen.append(args[0].detach().clone()))
    return seen, handle


# -- loading -----------------------------------------------------------------------------------------
def test_loads_through_checkpoint_folder(folder: Path):
    model = make_model(folder)
    assert model.session.network is not None
    assert model.session.configuration_manager.patch_size == list(PATCH)
    assert model.session.channel_mapping["points"] == (3, 4) and model.session.channel_mapping["bbox2d"] == (1, 2)
    first = next(iter(model.session.network.state_dict().values()))
    saved = torch.load(folder / "fold_0" / "checkpoint_final.pth", weights_only=True)["network_weights"]
    torch.testing.assert_close(first, next(iter(saved.values())))
    assert model.describe()["checkpoint"] == str(folder)


def test_checkpoint_errors(tmp_path: Path, folder: Path):
    with pytest.raises(ConfigError, match="--checkpoint FOLDER"):
        NNInteractiveModel(device="cpu")
    with pytest.raises(InputError, match="not found"):
        NNInteractiveModel(checkpoint=str(tmp_path / "none"), device="cpu")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="plans.json missing"):
        NNInteractiveModel(checkpoint=str(empty), device="cpu")
    unsafe = write_checkpoint_folder(tmp_path / "unsafe", weights={"x": NotWeights()})
    with pytest.raises(InputError, match="weights_only=True"):
        NNInteractiveModel(checkpoint=str(unsafe), device="cpu")


def test_import_failure_is_a_config_error(monkeypatch, folder: Path):
    monkeypatch.setitem(sys.modules, "nnInteractive.inference.inference_session", None)
    with pytest.raises(ConfigError, match=r"annosim\[nninteractive\]"):
        NNInteractiveModel(checkpoint=str(folder), device="cpu")


# -- prompts -----------------------------------------------------------------------------------------
def test_click_reaches_network_at_the_right_voxel(folder: Path, case):
    model = make_model(folder)
    seen, handle = record_inputs(model)
    model.set_volume(case.image, case.spacing)
    model.start_object()
    z, y, x = 12, 20, 45
    out = model.add_clicks(z, np.array([[y, x]]), np.array([1]))
    assert out.shape == (64, 64) and out.dtype == bool
    assert len(seen) == 1  # one forward pass per click without AutoZoom
    inp = seen[0]
    assert inp.shape == (1, 8, *PATCH)
    c = tuple(p // 2 for p in PATCH)  # the patch is centred on the click
    pos, neg = 1 + 3, 1 + 4  # input channel 0 is the image, then the interaction channels
    assert inp[0, pos][c].item() == 1.0
    assert np.unravel_index(int(inp[0, pos].argmax()), PATCH) == c
    assert inp[0, neg].abs().max().item() == 0.0
    vol = torch.from_numpy(case.image.astype(np.float32))
    expected = (case.image[z, y, x] - vol.mean()) / vol.std()  # the session's own z-scoring
    assert inp[0, 0][c].item() == pytest.approx(expected.item(), abs=1e-4)
    # a negative click lands in the negative point channel, centred likewise
    model.add_clicks(z, np.array([[30, 10]]), np.array([0]))
    assert inp.shape == seen[1].shape and seen[1][0, neg][c].item() == 1.0
    handle.remove()


def test_box_and_replace_write_the_right_interactions(folder: Path, case):
    model = make_model(folder)
    model.set_volume(case.image, case.spacing)
    model.start_object()
    model.add_box(7, (10, 20, 30, 25))  # inclusive (y0, x0, y1, x1)
    box = model.session.interactions[1].float().numpy() > 0
    expected = np.zeros(case.image.shape, dtype=bool)
    expected[7, 10:31, 20:26] = True
    np.testing.assert_array_equal(box, expected)
    model.add_clicks(12, np.array([[20, 45]]), np.array([1]))
    pos = model.session.interactions[3].float().numpy()
    assert pos[12, 20, 45] > 0
    # replace: the earlier click on slice 12 is gone, the box (another prompt) is replayed
    model.add_clicks(12, np.array([[40, 40]]), np.array([1]), replace=True)
    pos = model.session.interactions[3].float().numpy()
    assert pos[12, 20, 45] == 0 and pos[12, 40, 40] > 0
    np.testing.assert_array_equal(model.session.interactions[1].float().numpy() > 0, expected)
    # start_object forgets everything
    model.start_object()
    assert not model.propagate().any()
    assert float(model.session.interactions[3].float().abs().max()) == 0.0


def test_frames_outside_are_empty(folder: Path, case):
    model = make_model(folder)
    model.set_volume(case.image, case.spacing)
    model.start_object(np.arange(10, 20))
    model.add_clicks(15, np.array([[20, 45]]), np.array([1]))
    raw = model.session.target_buffer.numpy() > 0
    pred = model.propagate()
    assert pred.shape == case.image.shape
    assert not pred[:10].any() and not pred[20:].any()
    np.testing.assert_array_equal(pred[10:20], raw[10:20])


# -- end to end --------------------------------------------------------------------------------------
def test_he2024_end_to_end(folder: Path, case):
    from annosim.engine.case import evaluate_case

    model = make_model(folder)
    seen, handle = record_inputs(model)
    shapes = []
    res = evaluate_case(
        case, model, "he2024", settings=("full", "fg-only"), labels=[SPLEEN], seed=0,
        on_round=lambda label, setting, outcome: shapes.append(outcome.prediction.shape),
    )
    assert res.errors == []
    assert {r["setting"] for r in res.rows} == {"full", "fg-only"}
    for setting in ("full", "fg-only"):
        rs = [r for r in res.rows if r["setting"] == setting]
        assert [r["round"] for r in rs] == list(range(1, len(rs) + 1))
        assert rs[0]["annotated_slices"] == 1 and rs[0]["clicks"] >= 1
        assert all(b["clicks"] > a["clicks"] for a, b in zip(rs, rs[1:]))
        assert all(0.0 <= r["dice"] <= 1.0 and r["gt_slices"] == 30 for r in rs)
    assert all(s == case.image.shape for s in shapes)
    # one forward pass per click: every prompt of prompts.jsonl reached the network
    n_points = sum(p["kind"] == "point" for p in res.prompts)
    last_clicks = {r["setting"]: r["clicks"] for r in res.rows}  # rows are in round order
    assert len(seen) == n_points == sum(last_clicks.values())
    handle.remove()


def test_patch_protocols_run_and_the_case_image_comes_back(folder: Path, case):
    """nnInteractive under the patch protocols (issue 19: every 3D model; README "Patch
    models"): ``sammed3d`` (protocol-sources.md 7A: 1 click, IU L110-169) and
    ``radioactive-3d-point`` (section 8, 1 refinement) on a 16^3 patch, before ``he2024``. The
    patch twin shares the session, so the he2024 unit after them must see the case image again:
    its rows (clicks, Dice) are those of he2024 run alone (without the hand-back it fails)."""
    from annosim.engine.case import evaluate_case
    from annosim.protocols.registry import get_protocol

    def rows(res, protocol):
        return [(r["setting"], r["round"], r["clicks"], r["dice"]) for r in res.rows if r["protocol"] == protocol]

    alone = evaluate_case(case, make_model(folder), "he2024", settings=("full",), labels=[SPLEEN], seed=0)
    model = NNInteractiveModel(checkpoint=str(folder), device="cpu", autozoom="false", patch_size="16")
    assert model.describe()["patch"] == {"size": [16, 16, 16], "spacing": [1.5, 1.5, 1.5]}
    protocols = ["sammed3d", get_protocol("radioactive-3d-point", refinements=1), "he2024"]
    mixed = evaluate_case(case, model, protocols, settings=("full",), labels=[SPLEEN], seed=0)
    assert mixed.errors == []
    assert [r[1:3] for r in rows(mixed, "sammed3d")] == [(1, 1)]
    assert [r[1:3] for r in rows(mixed, "radioactive-3d-point")] == [(1, 1), (2, 2)]
    assert rows(mixed, "he2024") == rows(alone, "he2024")
    assert model.session._annosim_holder is model._holder
