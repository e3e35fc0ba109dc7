"""VISTA3D adapter: grid mapping, label map, checkpoint loading, prompt conversion checked on the
network's inputs, and he2024 end to end in the three modes (random weights, reduced patch)."""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("monai")

from annosim.errors import ConfigError, InputError  # noqa: E402
from annosim.models.native3d_grid import RASGrid, resampled_size  # noqa: E402
from annosim.models.vista3d_model import (  # noqa: E402
    HU_WINDOW,
    VISTA3DModel,
    name_key,
    parse_label_map,
)
from annosim.models.vista3d_weights import load_vista3d  # noqa: E402

SPLEEN = 1  # totalseg-abdomen label value


class NotWeights:
    """An arbitrary object: weights_only loading must refuse a checkpoint holding it."""


# -- fixtures --------------------------------------------------------------------------------------
@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_torch_thread):
    """Small 3D convolutions run ~10x faster on one thread on a shared 2-core runner."""


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight VISTA3D (encoder width 8) saved as a plain state dict, as the bundle's."""
    from monai.networks.nets import vista3d132

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("vista3d") / "model.pt"
    torch.save(vista3d132(encoder_embed_dim=8).state_dict(), path)
    return path


@pytest.fixture(scope="module")
def case(shared_data: Path):
    """totalseg-abdomen cropped around the spleen: (30, 64, 64) voxels of 3 mm."""
    from annosim.data.layouts import open_dataset

    folder = shared_data / "totalseg-abdomen"
    full = open_dataset(f"{folder / 'ct.nii.gz'} {folder / 'seg.nii.gz'}").cases[0].load()
    crop = (slice(None), slice(32, 96), slice(58, 122))
    return dataclasses.replace(full, image=full.image[crop].copy(), label=full.label[crop].copy())


def make_model(checkpoint: Path, **kw) -> VISTA3DModel:
    kw = {"patch_size": 32, "target_spacing": "none", "device": "cpu", **kw}
    return VISTA3DModel(checkpoint=str(checkpoint), **kw)


class CallRecorder:
    """Forward pre-hook recording the keyword inputs of every network call."""

    def __init__(self, net: torch.nn.Module) -> None:
        self.calls: list[dict] = []
        self.handle = net.register_forward_pre_hook(self, with_kwargs=True)

    def __call__(self, module, args, kwargs):
        rec = {k: v for k, v in kwargs.items() if k != "transpose"}
        rec["input_images"] = (args[0] if args else kwargs["input_images"]).detach().clone()
        if len(args) > 1:  # sliding_window_inference passes patch coordinates positionally
            rec["patch_coords"] = args[1]
        self.calls.append(rec)


# -- grid ------------------------------------------------------------------------------------------
def test_ras_grid_maps_voxels_and_points_consistently():
    vol = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)  # (Z, Y, X)
    grid = RASGrid((2, 3, 4), (2.0, 1.0, 1.0))
    ras = grid.to_ras(vol)
    assert ras.shape == (4, 3, 2)
    # (z, y, x) = (1, 0, 3) -> (X-1-x, Y-1-y, z) = (0, 2, 1)
    assert grid.points_to_net(np.array([[1, 0, 3]])).tolist() == [[0, 2, 1]]
    assert ras[0, 2, 1] == vol[1, 0, 3]
    np.testing.assert_array_equal(grid.from_ras(ras), vol)
    net = grid.volume_to_net(vol)
    assert tuple(net.shape) == (1, 1, 4, 3, 2)
    np.testing.assert_array_equal(grid.net_to_volume(net[0, 0]).numpy(), vol)


def test_ras_grid_resampling_sizes_and_point_scaling():
    assert resampled_size(30, 3.0, 1.5) == 60
    assert resampled_size(5, 1.0, None) == 5
    grid = RASGrid((30, 101, 122), (3.0, 3.0, 3.0), target_spacing=1.5)
    assert grid.net_shape == (244, 202, 60)
    # x = 100 -> RAS i = 21 -> 21 * 243 / 121 = 42.17 -> 42; y = 0 -> j = 100 -> 201; z = 29 -> 59
    assert grid.points_to_net(np.array([[29, 0, 100]])).tolist() == [[42, 201, 59]]
    # trilinear resampling on corner-aligned grids keeps a linear ramp: there and back is exact
    z, y, x = np.meshgrid(np.arange(30), np.arange(101), np.arange(122), indexing="ij")
    vol = (3.0 * z - 2.0 * y + 0.5 * x).astype(np.float32)
    net = grid.volume_to_net(vol)
    assert tuple(net.shape) == (1, 1, 244, 202, 60)
    assert net[0, 0, 0, 0, 0].item() == vol[0, 100, 121]  # RAS corner (0, 0, 0) = (z 0, y 100, x 121)
    back = grid.net_to_volume(net[0, 0]).numpy()
    np.testing.assert_allclose(back, vol, atol=1e-3)


# -- label map -------------------------------------------------------------------------------------
def test_label_map_defaults_names_and_overrides(tmp_path: Path):
    assert name_key("kidney_right") == name_key("Right Kidney")
    m = parse_label_map(None)
    assert m[name_key("spleen")] == 3 and m[name_key("liver")] == 1
    assert m[name_key("right kidney")] == 5 and m[name_key("kidney_left")] == 14
    m = parse_label_map("spleen=99, my organ=7")
    assert m[name_key("spleen")] == 99 and m[name_key("organ my")] == 7 and m[name_key("liver")] == 1
    path = tmp_path / "map.json"
    path.write_text(json.dumps({"tumour": 26}))
    assert parse_label_map(str(path))[name_key("tumour")] == 26
    with pytest.raises(ConfigError, match="name=class_id"):
        parse_label_map("spleen")
    with pytest.raises(ConfigError, match="integer"):
        parse_label_map({"spleen": "three"})


# -- checkpoints -----------------------------------------------------------------------------------
def test_checkpoint_loads_plain_wrapped_and_prefixed(checkpoint: Path, tmp_path: Path):
    state = torch.load(checkpoint, weights_only=True)
    net = load_vista3d(checkpoint)
    key = "image_encoder.encoder.conv_init.weight"
    assert net.image_encoder.encoder.conv_init.weight.shape[0] == 8
    torch.testing.assert_close(net.state_dict()[key], state[key])
    wrapped = tmp_path / "wrapped.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, wrapped)
    torch.testing.assert_close(load_vista3d(wrapped).state_dict()[key], state[key])


def test_checkpoint_errors_name_the_file(tmp_path: Path, checkpoint: Path):
    with pytest.raises(InputError, match="not found"):
        load_vista3d(tmp_path / "missing.pt")
    other = tmp_path / "other.pt"
    torch.save({"weight": torch.zeros(3)}, other)
    with pytest.raises(InputError, match="not a VISTA3D state dict"):
        load_vista3d(other)
    partial = tmp_path / "partial.pt"
    state = torch.load(checkpoint, weights_only=True)
    torch.save({k: v for k, v in state.items() if not k.startswith("class_head")}, partial)
    with pytest.raises(InputError, match="lacks"):
        load_vista3d(partial)
    unsafe = tmp_path / "unsafe.pt"
    torch.save({"obj": NotWeights()}, unsafe)  # unpickling it would import and build a class
    with pytest.raises(InputError, match="not a loadable checkpoint .*weights_only=True"):
        load_vista3d(unsafe)


def test_without_checkpoint_offline_error_says_how(monkeypatch, tmp_path: Path):
    import monai.bundle

    def offline(**kwargs):
        raise OSError("Temporary failure in name resolution")

    monkeypatch.setattr(monai.bundle, "download", offline)
    monkeypatch.setenv("ANNOSIM_CACHE", str(tmp_path))
    with pytest.raises(ConfigError) as err:
        VISTA3DModel(device="cpu")
    msg = str(err.value)
    assert "\n" not in msg and "--checkpoint PATH" in msg and "name resolution" in msg


def test_bad_mode_and_patch_size(checkpoint: Path):
    with pytest.raises(ConfigError, match="mode"):
        make_model(checkpoint, mode="box")
    with pytest.raises(ConfigError, match="multiples of 16"):
        make_model(checkpoint, patch_size="30")


# -- prompt conversion -----------------------------------------------------------------------------
def test_click_reaches_network_at_the_right_voxel(checkpoint: Path, case):
    model = make_model(checkpoint)
    rec = CallRecorder(model.network)
    model.set_volume(case.image, case.spacing)
    model.set_target(SPLEEN, "spleen")
    model.start_object()
    z, y, x = 12, 20, 45
    out = model.add_clicks(z, np.array([[y, x]]), np.array([1]))
    assert out.shape == (64, 64) and out.dtype == bool
    assert len(rec.calls) == 1  # one window, centred on the click
    call = rec.calls[0]
    # RAS (X-1-x, Y-1-y, z) = (18, 43, 12); the 30 slices are padded by 1 on each side to 32
    assert call["point_coords"].tolist() == [[[18.0, 43.0, 13.0]]]
    assert call["point_labels"].tolist() == [[1]]
    window = call["patch_coords"][0][2:]
    local = [int(c) - s.start for c, s in zip(call["point_coords"][0, 0], window)]
    lo, hi = HU_WINDOW
    expected = np.clip((case.image[z, y, x] - lo) / (hi - lo), 0, 1)
    assert call["input_images"].shape == (1, 1, 32, 32, 32)
    assert call["input_images"][0, 0, local[0], local[1], local[2]].item() == pytest.approx(expected, abs=1e-6)
    # a negative click: label 0, appended after the first; only the new click opens a window
    model.add_clicks(z, np.array([[30, 10]]), np.array([0]))
    assert len(rec.calls) == 2
    assert rec.calls[1]["point_coords"].tolist() == [[[18.0, 43.0, 13.0], [53.0, 33.0, 13.0]]]
    assert rec.calls[1]["point_labels"].tolist() == [[1, 0]]
    assert rec.calls[1]["class_vector"] is None  # point mode: no class head
    rec.handle.remove()


def test_replace_drops_earlier_clicks_on_that_slice(checkpoint: Path, case):
    model = make_model(checkpoint)
    rec = CallRecorder(model.network)
    model.set_volume(case.image, case.spacing)
    model.start_object()
    model.add_clicks(3, np.array([[20, 45]]), np.array([1]))
    model.add_clicks(12, np.array([[20, 45]]), np.array([1]))
    model.add_clicks(12, np.array([[30, 10]]), np.array([0]), replace=True)
    last = rec.calls[-2:]  # replace reruns both remaining clicks from scratch
    assert [c["point_coords"].tolist() for c in last] == [[[[18.0, 43.0, 4.0], [53.0, 33.0, 13.0]]]] * 2
    assert [c["point_labels"].tolist() for c in last] == [[[1, 0]]] * 2
    rec.handle.remove()


def test_frames_outside_are_empty(checkpoint: Path, case):
    model = make_model(checkpoint, mode="auto")
    model.set_volume(case.image, case.spacing)
    model.set_target(SPLEEN, "spleen")
    model.start_object(np.arange(10, 20))
    pred = model.propagate()
    assert pred.shape == case.image.shape
    assert not pred[:10].any() and not pred[20:].any()


def test_auto_mode_needs_a_class(checkpoint: Path, case):
    model = make_model(checkpoint, mode="auto")
    model.set_volume(case.image, case.spacing)
    model.set_target(98, "rib_left_7")
    with pytest.raises(ConfigError, match="label_map"):
        model.start_object()


# -- end to end --------------------------------------------------------------------------------------
def _check_rows(rows, case, settings=("full", "fg-only")):
    assert {r["setting"] for r in rows} == set(settings)
    for setting in settings:
        rs = [r for r in rows if r["setting"] == setting]
        assert [r["round"] for r in rs] == list(range(1, len(rs) + 1))
        assert all(r["case"] == case.case_id and r["label"] == SPLEEN and r["label_name"] == "spleen" for r in rs)
        assert all(0.0 <= r["dice"] <= 1.0 and r["model_seconds"] > 0 for r in rs)
        assert all(r["gt_slices"] == 30 for r in rs)  # the spleen spans all 30 slices


def test_he2024_point_mode_end_to_end(checkpoint: Path, case):
    from annosim.engine.case import evaluate_case

    model = make_model(checkpoint)
    rec = CallRecorder(model.network)
    seen = []
    res = evaluate_case(
        case, model, "he2024", settings=("full", "fg-only"), labels=[SPLEEN], seed=0,
        on_round=lambda label, setting, outcome: seen.append((setting, outcome.prediction.shape, outcome.clicks)),
    )
    assert res.errors == []
    _check_rows(res.rows, case)
    assert all(shape == case.image.shape for _, shape, _ in seen)
    full = [r for r in res.rows if r["setting"] == "full"]
    assert full[0]["clicks"] >= 1 and full[0]["annotated_slices"] == 1
    assert all(b["clicks"] > a["clicks"] for a, b in zip(full, full[1:]))
    # every click of prompts.jsonl reached the network, converted to RAS (X-1-x, Y-1-y, z+1 pad)
    clicks = [(p["z"], p["y"], p["x"]) for p in res.prompts if p["setting"] == "full" and p["kind"] == "point"]
    sent = {tuple(c) for call in rec.calls for c in call["point_coords"][0].int().tolist()}
    assert {(63 - x, 63 - y, z + 1) for z, y, x in clicks} <= sent
    rec.handle.remove()


def test_he2024_auto_and_auto_point_modes(checkpoint: Path, case):
    from annosim.engine.case import evaluate_case

    auto = make_model(checkpoint, mode="auto")
    assert auto.prompt_free
    rec = CallRecorder(auto.network)
    res = evaluate_case(case, auto, "he2024", settings=("full", "fg-only"), labels=[SPLEEN], seed=0)
    assert res.errors == [] and res.prompts == []
    _check_rows(res.rows, case)
    assert [(r["round"], r["clicks"], r["annotated_slices"]) for r in res.rows] == [(1, 0, 0), (1, 0, 0)]
    # the class head ran once per case (cached across settings), prompted with spleen = class 3
    n_windows = len(rec.calls)
    assert n_windows == 9  # 3 x 3 x 1 windows of 32 over 64 x 64 x 30 at overlap 0.25
    assert all(c["class_vector"].tolist() == [[3]] and c["point_coords"] is None for c in rec.calls)
    rec.handle.remove()

    both = make_model(checkpoint, mode="auto+point")
    assert not both.prompt_free
    rec = CallRecorder(both.network)
    res = evaluate_case(case, both, "he2024", settings=("full",), labels=[SPLEEN], seed=0)
    assert res.errors == []
    _check_rows(res.rows, case, settings=("full",))
    assert res.rows[0]["clicks"] >= 1
    point_calls = [c for c in rec.calls if c.get("point_coords") is not None]
    assert point_calls and all(c["class_vector"].tolist() == [[3]] for c in point_calls)
    assert len(rec.calls) - len(point_calls) == 9  # the automatic start, computed once
    rec.handle.remove()


# -- device path (issue 17 item 6) -----------------------------------------------------------------
class MonaiPathVISTA3D(VISTA3DModel):
    """The per-click path as it was before issue 17: MONAI's ``point_based_window_inferer`` (stitched
    on the CPU) and ``keep_components_with_positive_points`` (scikit-image), logits held on the CPU
    and copied back to the device as ``prev_mask`` on every click."""

    def _point_logits(self, obj, first_new):
        from monai.apps.vista3d.inferer import point_based_window_inferer

        coords, labels = self._point_arrays(obj)
        cls = None if self.class_id is None else torch.tensor([[self.class_id]], device=self.device)
        prev = None if obj.logits is None else obj.logits.cpu().to(self.device)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Setting affine", category=UserWarning)
            out = point_based_window_inferer(
                inputs=self.image, roi_size=self.patch_size, predictor=self.network,
                point_coords=torch.as_tensor(coords[None], dtype=torch.float32),
                point_labels=torch.as_tensor(labels[None]),
                class_vector=cls if self.mode == "auto+point" else None, prompt_class=cls,
                prev_mask=prev, point_start=first_new, transpose=True,
            )
        out = torch.as_tensor(out).float().cpu()
        return torch.nan_to_num(out, nan=float(self.network.NINF_VALUE))

    def _kept_logits(self, logits, obj):
        from monai.transforms.utils import keep_components_with_positive_points

        if self.mode == "point" and len(obj.points):
            coords, labels = self._point_arrays(obj)
            return keep_components_with_positive_points(
                logits.clone(), torch.as_tensor(coords[None], dtype=torch.float32), torch.as_tensor(labels[None])
            )
        return logits

    def _volume_mask(self):
        """The whole volume resampled with F.interpolate on every call (every click, before)."""
        if self._net is None:
            return torch.zeros(self.shape, dtype=torch.bool)
        mask = interpolate_to_case(self.grid, self._net).numpy() > 0
        mask[self._obj.outside.numpy()] = False
        return torch.from_numpy(mask)

    def _slice(self, z):
        return self._volume_mask()[z].numpy().copy()


def interpolate_to_case(grid: RASGrid, net: torch.Tensor) -> torch.Tensor:
    """Network ``(H, W, D)`` -> canonical ``(Z, Y, X)`` with ``F.interpolate`` trilinear,
    corner-aligned: the resampling before issue 17 item 6."""
    t = net.float()
    if tuple(t.shape) != grid.ras_shape:
        t = torch.nn.functional.interpolate(t[None, None], size=grid.ras_shape, mode="trilinear",
                                            align_corners=True)[0, 0]
    return t.flip(0, 1).permute(2, 1, 0)


_MONAI_RUNS: dict = {}


def _run_he2024(model, case, settings=("full",)):
    from annosim.engine.case import evaluate_case

    preds = []
    res = evaluate_case(
        case, model, "he2024", settings=settings, labels=[SPLEEN], seed=0,
        on_round=lambda label, setting, outcome: preds.append(outcome.prediction.copy()),
    )
    assert res.errors == []
    return res, preds


@pytest.mark.parametrize(
    "kw",
    [
        {"target_spacing": "none"},
        {"target_spacing": 2.5},  # resampled both ways: net grid (77, 77, 36) -> case (64, 64, 30)
        {"target_spacing": 2.5, "flood": True},  # components grown on the device (GPU path)
        {"mode": "auto+point"},
    ],
    ids=["native", "resampled", "resampled-flood", "auto+point"],
)
def test_device_path_gives_the_masks_of_the_monai_path(checkpoint: Path, case, monkeypatch, kw):
    """Every round's mask, every click and every row equal those of MONAI's CPU functions."""
    from annosim.models import vista3d_device

    kw = dict(kw)
    if kw.pop("flood", False):
        monkeypatch.setattr(vista3d_device, "HOST_LABELLING_DEVICES", ())
    new_res, new_preds = _run_he2024(make_model(checkpoint, **kw), case)
    key = repr(sorted(kw.items()))
    if key not in _MONAI_RUNS:  # the flood variant compares with the same MONAI run
        old = MonaiPathVISTA3D(checkpoint=str(checkpoint), **{"patch_size": 32, "target_spacing": "none",
                                                             "device": "cpu", **kw})
        _MONAI_RUNS[key] = _run_he2024(old, case)
    old_res, old_preds = _MONAI_RUNS[key]
    assert len(new_preds) == len(old_preds) > 2
    assert new_res.prompts == old_res.prompts
    for a, b in zip(new_preds, old_preds):
        np.testing.assert_array_equal(a, b)
    strip = lambda rows: [repr({k: v for k, v in r.items() if k != "model_seconds"}) for r in rows]  # noqa: E731
    assert strip(new_res.rows) == strip(old_res.rows)
    assert any(p.any() for p in new_preds)


def test_flood_fill_selects_the_components_scikit_image_labels(monkeypatch):
    """keep_positive_components on the device path == MONAI's keep_components_with_positive_points
    (26-connected components, scikit-image ``label(connectivity=3)``), on random blobs."""
    from monai.transforms.utils import keep_components_with_positive_points

    from annosim.models import vista3d_device

    rng = np.random.default_rng(0)
    for trial in range(6):
        logits = torch.from_numpy(rng.normal(-0.3, 1.0, (1, 1, 20, 18, 16)).astype(np.float32))
        logits[0, 0, 3, 4, 5] = float("nan") if trial % 2 else logits[0, 0, 3, 4, 5]
        coords = rng.integers(0, 16, (4, 3))
        labels = np.array([1, 0, 3, 0]) if trial % 3 else np.array([0, 0, 2, 0])
        expected = keep_components_with_positive_points(
            logits.clone(), torch.as_tensor(coords[None], dtype=torch.float32), torch.as_tensor(labels[None])
        )
        monkeypatch.setattr(vista3d_device, "HOST_LABELLING_DEVICES", ())
        got = vista3d_device.keep_positive_components(logits, coords, labels)
        monkeypatch.undo()
        torch.testing.assert_close(got, expected, rtol=0, atol=0, equal_nan=True)


class HostCopies:
    """Records every tensor read back to the host (``.cpu()``, ``.numpy()``, ``.tolist()``,
    ``.item()``, ``np.asarray``) and every ``.to(device)``, with its element count, made outside
    the network's forward (MONAI's VISTA3D labels the components of each window inside its forward,
    ``connected_components_combine``: with scikit-image on the host unless cuCIM is installed)."""

    def __init__(self, monkeypatch, network: torch.nn.Module) -> None:
        self.calls: list[tuple[str, int]] = []
        self.in_network = 0
        for name in ("cpu", "numpy", "tolist", "item", "__array__"):
            self._wrap(monkeypatch, name, lambda *a, **k: True)
        self._wrap(monkeypatch, "to", lambda *a, **k: any(
            isinstance(v, (str, torch.device)) for v in (*a, *k.values())))
        self.hooks = [network.register_forward_pre_hook(lambda *a: self._enter(1)),
                      network.register_forward_hook(lambda *a: self._enter(-1))]

    def _enter(self, step: int) -> None:
        self.in_network += step

    def _wrap(self, monkeypatch, name, counts) -> None:
        original = getattr(torch.Tensor, name)

        def wrapper(t, *args, **kwargs):
            if not self.in_network and counts(*args, **kwargs):
                self.calls.append((name, t.numel()))
            return original(t, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, wrapper)


def test_per_click_path_copies_only_the_returned_slice(checkpoint: Path, case, monkeypatch):
    """A click moves no logits between device and host: the largest tensor read back is the
    returned (Y, X) slice; propagate reads the (Z, Y, X) mask back once and caches it."""
    from annosim.models import vista3d_device

    monkeypatch.setattr(vista3d_device, "HOST_LABELLING_DEVICES", ())  # the GPU path, on the CPU
    model = make_model(checkpoint, target_spacing=2.5)
    model.set_volume(case.image, case.spacing)
    model.set_target(SPLEEN, "spleen")
    model.start_object()
    model.add_clicks(12, np.array([[20, 45]]), np.array([1]))  # first window: no previous logits
    copies = HostCopies(monkeypatch, model.network)
    out = model.add_clicks(12, np.array([[30, 10]]), np.array([0]))
    out2 = model.add_clicks(14, np.array([[22, 40]]), np.array([1]))
    per_click = list(copies.calls)
    vol1 = model.propagate()
    vol2 = model.propagate()
    monkeypatch.undo()
    for h in copies.hooks:
        h.remove()
    assert out.shape == out2.shape == (64, 64)
    slice_size, volume_size = 64 * 64, 30 * 64 * 64
    assert per_click and max(n for _, n in per_click) == slice_size
    assert ("cpu", slice_size) in per_click
    after = copies.calls[len(per_click):]
    # one read-back (tensor.cpu().numpy()) for two propagates
    assert [c for c in after if c[1] > slice_size] == [("cpu", volume_size), ("numpy", volume_size)]
    np.testing.assert_array_equal(vol1, vol2)
    np.testing.assert_array_equal(vol1[14], out2)


# -- case-grid resampling once per round (issue 17 item 6) -----------------------------------------
CLICKS = [(5, (10, 10), 1), (5, (40, 20), 0), (5, (14, 14), 1)]  # one slice, as in a he2024 round


@pytest.mark.parametrize("mode", ["point", "auto+point"])
def test_slice_after_each_click_is_bitwise_the_propagated_slice(checkpoint: Path, case, mode):
    """The slice a click returns is resampled alone (NetToCase.slice), the volume once for
    propagate (NetToCase.volume): same arithmetic, so slice == propagate()[z] bit for bit."""
    model = make_model(checkpoint, mode=mode, target_spacing=2.5)  # net (77, 77, 36) -> case (30, 64, 64)
    model.set_volume(case.image, case.spacing)
    model.set_target(SPLEEN, "spleen")
    model.start_object()
    outs = []
    for z, (y, x), lab in CLICKS:
        out = model.add_clicks(z, np.array([[y, x]]), np.array([lab]))
        value = model.resampler.slice(model._net, z)  # the float slice behind the mask
        np.testing.assert_array_equal(out, model.propagate()[z])
        assert torch.equal(value, model.resampler.volume(model._net)[z])
        outs.append(out)
    assert any(o.any() for o in outs) and not all(o.all() for o in outs)


def test_whole_volume_is_resampled_once_per_round(checkpoint: Path, case, monkeypatch):
    """3 clicks + propagate (twice) = 1 whole-volume resample; the next click + propagate = 1 more."""
    from annosim.models.native3d_grid import NetToCase

    calls = []
    original = NetToCase.volume
    monkeypatch.setattr(NetToCase, "volume", lambda self, net: calls.append(net.shape) or original(self, net))
    model = make_model(checkpoint, target_spacing=2.5)
    model.set_volume(case.image, case.spacing)
    model.start_object()
    for z, (y, x), lab in CLICKS:
        model.add_clicks(z, np.array([[y, x]]), np.array([lab]))
    assert calls == []
    first = model.propagate()
    np.testing.assert_array_equal(model.propagate(), first)
    assert calls == [(77, 77, 36)]
    model.add_clicks(14, np.array([[22, 40]]), np.array([1]))
    model.propagate()
    assert len(calls) == 2


@pytest.mark.parametrize(
    "shape, spacing, target",
    [((30, 64, 64), (3.0, 2.0, 2.0), 2.5), ((7, 9, 11), (2.0, 1.0, 1.3), 1.1), ((30, 101, 122), (3.0,) * 3, 1.5)],
    ids=["shrink-xy", "odd", "sample-ct-grid"],
)
def test_separable_resample_matches_f_interpolate_trilinear(shape, spacing, target):
    """NetToCase == torch's trilinear ``F.interpolate(align_corners=True)`` (the resampling of
    MONAI ``Spacingd(align_corners=True)``, annosim/models/native3d_grid.py docstring) to float
    rounding, on random logits: values within 1e-5, masks equal wherever |value| >= 1e-5."""
    grid = RASGrid(shape, spacing, target)
    net = torch.from_numpy(np.random.default_rng(1).normal(0.0, 2.0, grid.net_shape).astype(np.float32))
    got = grid.net_to_case().volume(net)
    ref = interpolate_to_case(grid, net)
    assert got.shape == ref.shape == shape
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-5)
    differ = (got > 0) != (ref > 0)
    assert not (differ & (ref.abs() >= 1e-5)).any()
    assert all(torch.equal(grid.net_to_case().slice(net, z), got[z]) for z in range(shape[0]))


def test_separable_resample_by_hand():
    """Net (H, W, D) = (2, 1, 2) -> case (Z, Y, X) = (3, 1, 3): ras[i, 0, k] = 4 i + 2 k on the
    corner-aligned grid, and canonical[z, 0, x] = ras[X - 1 - x, 0, z] (module docstring)."""
    grid = RASGrid((3, 1, 3), (1.0, 1.0, 1.0), 1.5)
    assert grid.net_shape == (2, 1, 2)
    net = torch.tensor([[[0.0, 4.0]], [[8.0, 12.0]]])
    got = grid.net_to_case().volume(net)
    assert got[:, 0].tolist() == [[8.0, 4.0, 0.0], [10.0, 6.0, 2.0], [12.0, 8.0, 4.0]]
    assert grid.net_to_case().slice(net, 1)[0].tolist() == [10.0, 6.0, 2.0]
