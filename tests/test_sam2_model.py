"""SAM2 adapter against the official SAM2VideoPredictor (sam2 1.1.0), on the CPU.

The model is a SAM2.1 Hiera-tiny built from its config with random weights (torch seed 0) at
image_size 256, saved as a checkpoint and loaded the way ``--checkpoint`` loads it. The
reference ("plain loop") is the official predictor with no feature cache, reading frames from a
folder through its own ``init_state``:

- variant ``he2024-vista``: real JPEG files written with Pillow's defaults, as the reference script
  wrote them;
- variant ``he2024``: lossless PNG data saved under ``NNNN.jpg`` names. SAM2's folder reader
  selects files by extension but Pillow opens them by content, so the official reading path
  (``load_video_frames`` -> ``_load_img_as_tensor``) sees exactly the in-memory frames.

Grey levels of the plain loop come from MONAI's ``ScaleIntensityRange`` (as in the reference's
transforms), independent of annosim's windowing code.
"""

from __future__ import annotations

import dataclasses
import hashlib
import warnings
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sam2")

from annosim.errors import ConfigError, InputError  # noqa: E402
from annosim.models.sam2_checkpoints import build_video_predictor  # noqa: E402
from annosim.models.sam2_model import SAM2Model, Sam2Options  # noqa: E402

CONFIG = "configs/sam2.1/sam2.1_hiera_t.yaml"
SIZE = 256
# Runtime: the plain loop re-encodes every frame on every pass, so the case is cropped to
# slices 10..21 of 30; there kidney_right spans 9 slices, gallbladder 5 and pancreas 10 of 12.
Z_CROP = (10, 22)
LABELS = (2, 4, 7)
ROUNDS = 2


# -- fixtures ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random-weight SAM2.1 Hiera-tiny at image_size 256, saved like an official checkpoint."""
    torch.manual_seed(0)
    model = build_video_predictor(CONFIG, SIZE)
    path = tmp_path_factory.mktemp("ckpt") / "sam21_tiny_random.pt"
    torch.save({"model": model.state_dict()}, path)
    return path


@pytest.fixture(scope="module")
def model(checkpoint: Path) -> SAM2Model:
    return SAM2Model("sam2.1-hiera-tiny", checkpoint=str(checkpoint), image_size=str(SIZE), device="cpu")


@pytest.fixture(scope="module")
def official(checkpoint: Path):
    """The official predictor, built and loaded by sam2's own builder."""
    from sam2.build_sam import build_sam2_video_predictor

    return build_sam2_video_predictor(
        CONFIG, str(checkpoint), device="cpu", hydra_overrides_extra=[f"++model.image_size={SIZE}"]
    )


@pytest.fixture(scope="module")
def dataset(shared_data: Path):
    from annosim.data.layouts import open_dataset

    d = shared_data / "totalseg-abdomen"
    return open_dataset(f"{d / 'ct.nii.gz'} {d / 'seg.nii.gz'}", label_names=str(d / "labels.json"))


def load_cropped(dataset, orientation: str):
    """The sample case in ``orientation``, slices Z_CROP only."""
    case = dataset.cases[0].load(orientation=orientation)
    z0, z1 = Z_CROP
    return dataclasses.replace(
        case,
        case_id=f"{case.case_id}-z{z0}-{z1}",
        image=case.image[z0:z1].copy(),
        label=case.label[z0:z1].copy(),
    )


# -- the plain loop ------------------------------------------------------------------------------
def reference_gray(volume: np.ndarray) -> np.ndarray:
    """uint8 slices as the reference made them: MONAI ScaleIntensityRange, then astype(uint8)."""
    from monai.transforms import ScaleIntensityRange

    scaled = ScaleIntensityRange(a_min=-1000, a_max=1000, b_min=0, b_max=255, clip=True)(volume)
    return np.asarray(scaled).astype(np.uint8)


def write_frames(folder: Path, gray: np.ndarray, codec: str) -> str:
    """One file per slice, ``0001.jpg`` ...: JPEG (Pillow defaults) or PNG data under .jpg names."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i, g in enumerate(gray):
        path = folder / f"{i + 1:04d}.jpg"
        if codec == "jpeg":
            Image.fromarray(g).save(path)  # format from the extension: JPEG, default quality
        else:
            Image.fromarray(np.repeat(g[..., None], 3, axis=2)).save(path, format="PNG")
    return str(folder)


def run_official(predictor, state, frames: np.ndarray, shape) -> np.ndarray:
    """Forward then reverse propagation, later pass overwriting, as the reference script."""
    out = np.zeros(shape, dtype=bool)
    for reverse in (False, True):
        for idx, _, logits in predictor.propagate_in_video(state, reverse=reverse):
            out[frames[idx]] = (logits[0, 0] > 0.0).numpy()
    return out


def add_official(predictor, state, frames: np.ndarray, z: int, clicks: list) -> np.ndarray:
    """All ``clicks`` [(y, x, positive)] on slice ``z`` at once, SAM2's default clear_old_points."""
    pts = np.array([[x, y] for y, x, _ in clicks], dtype=np.float32)
    lbs = np.array([int(p) for _, _, p in clicks], dtype=np.int32)
    i = int(np.searchsorted(frames, z))
    _, _, logits = predictor.add_new_points_or_box(state, frame_idx=i, obj_id=1, points=pts, labels=lbs)
    return (logits[0, 0] > 0.0).numpy()


def plain_loop(predictor, folder: str, frames: np.ndarray, shape, outcomes, vista: bool) -> list:
    """Replay the prompts recorded per round with the official predictor, no feature cache.

    Round 1: vista resets the object and sends all clicks so far for each of its clicks; the
    paper variant sends them one by one, accumulating. Later rounds: the round's clicks
    replace the slice's earlier ones (vista) or are added to them (paper).
    """
    state = predictor.init_state(video_path=folder)
    clicks: dict[int, list] = {}
    preds = []
    for rnd, outcome in enumerate(outcomes, start=1):
        pts = [(p.z, p.y, p.x, p.positive) for p in outcome.prompts]
        assert all(p.kind == "point" for p in outcome.prompts)
        if rnd == 1:
            z0 = pts[0][0]
            assert all(z == z0 for z, *_ in pts)
            for k in range(1, len(pts) + 1):
                if vista:
                    predictor.reset_state(state)
                    clicks[z0] = [p[1:] for p in pts[:k]]
                else:
                    clicks.setdefault(z0, []).append(pts[k - 1][1:])
                add_official(predictor, state, frames, z0, clicks[z0])
        else:
            z = pts[0][0]
            assert all(p[0] == z for p in pts)
            new = [p[1:] for p in pts]
            clicks[z] = new if vista else clicks.get(z, []) + new
            add_official(predictor, state, frames, z, clicks[z])
        preds.append(run_official(predictor, state, frames, shape))
    return preds


# -- equivalence ---------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("protocol_name", ["he2024", "he2024-vista"])
def test_rounds_bitwise_equal_to_official_plain_loop(
    protocol_name: str, model: SAM2Model, official, dataset, tmp_path: Path
) -> None:
    from annosim.protocols.registry import get_protocol
    from annosim.engine.case import evaluate_case
    from annosim.engine.unit import setting_frames

    protocol = get_protocol(protocol_name, rounds=ROUNDS)
    vista = protocol_name == "he2024-vista"
    case = load_cropped(dataset, protocol.orientation or "canonical")
    n = case.image.shape[0]
    # fg-only videos are strictly shorter than the full one for all three labels
    assert [setting_frames(case.label == lab, "fg-only").size for lab in LABELS] == [9, 5, 10]
    recorded: dict[tuple[int, str], list] = {}

    def on_round(label: int, setting: str, outcome) -> None:
        recorded.setdefault((label, setting), []).append(outcome)

    res = evaluate_case(
        case, model, protocol, settings=("full", "fg-only"), labels=list(LABELS), seed=0,
        surface_metrics=False, on_round=on_round,
    )
    assert res.errors == []
    assert model.frame_codec == ("jpeg" if vista else "raw")
    # The encoder ran once per slice of the case, for 3 labels x 2 settings x 2 rounds.
    assert model.encoder_calls == n == 12
    assert sorted(recorded) == sorted((lab, s) for lab in LABELS for s in ("full", "fg-only"))

    gray = reference_gray(case.image)
    codec = "jpeg" if vista else "png"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the official predictor warns that sam2._C is absent
        for (label, setting), outcomes in sorted(recorded.items()):
            frames = setting_frames(case.label == label, setting)
            frames = np.arange(n) if frames is None else frames
            folder = write_frames(tmp_path / f"{label}-{setting}", gray[frames], codec)
            expected = plain_loop(official, folder, frames, case.image.shape, outcomes, vista)
            assert len(expected) == len(outcomes) >= 2
            for rnd, (want, got) in enumerate(zip(expected, outcomes), start=1):
                assert got.prediction.shape == case.image.shape
                assert np.array_equal(got.prediction, want), (label, setting, rnd)
                assert not got.prediction[np.setdiff1d(np.arange(n), frames)].any()


# -- frames, clicks, replace ---------------------------------------------------------------------
def test_noncontiguous_frames_accumulate_and_replace(
    model: SAM2Model, official, dataset, tmp_path: Path
) -> None:
    """A video of non-contiguous slices; replace=False accumulates, replace=True replaces."""
    case = dataset.cases[0].load(orientation="canonical")
    frames = np.array([3, 4, 7, 8, 12, 13])
    model.set_volume(case.image, case.spacing)
    model.configure_protocol(frame_codec="raw")
    model.start_object(frames)
    gt = case.label == 2
    ys, xs = np.nonzero(gt[8])
    p1, p2 = (int(ys[0]), int(xs[0])), (int(ys[-1]), int(xs[-1]))
    m1 = model.add_clicks(8, np.array([p1]), np.array([1]))
    m2 = model.add_clicks(8, np.array([p2]), np.array([1]))
    v1 = model.propagate()
    m3 = model.add_clicks(13, np.array([p1, p2]), np.array([1, 0]))
    m4 = model.add_clicks(13, np.array([p2]), np.array([0]), replace=True)
    v2 = model.propagate()
    assert m1.dtype == bool and m1.shape == case.image.shape[1:]
    assert v1.shape == case.image.shape
    outside = np.setdiff1d(np.arange(case.image.shape[0]), frames)
    assert not v1[outside].any() and not v2[outside].any()
    assert model.encoder_calls == frames.size
    with pytest.raises(ValueError, match="not one of this object's frames"):
        model.add_clicks(5, np.array([p1]), np.array([1]))

    folder = write_frames(tmp_path / "v", reference_gray(case.image)[frames], "png")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        state = official.init_state(video_path=folder)
        # replace=False: the official predictor given every click on the slice so far.
        assert np.array_equal(add_official(official, state, frames, 8, [(*p1, True)]), m1)
        assert np.array_equal(add_official(official, state, frames, 8, [(*p1, True), (*p2, True)]), m2)
        assert np.array_equal(run_official(official, state, frames, case.image.shape), v1)
        assert np.array_equal(add_official(official, state, frames, 13, [(*p1, True), (*p2, False)]), m3)
        assert np.array_equal(add_official(official, state, frames, 13, [(*p2, False)]), m4)
        assert np.array_equal(run_official(official, state, frames, case.image.shape), v2)


def test_box_and_mask_prompts_match_official(
    model: SAM2Model, official, dataset, tmp_path: Path
) -> None:
    case = dataset.cases[0].load(orientation="canonical")
    model.set_volume(case.image, case.spacing)
    model.configure_protocol(frame_codec="raw")
    frames = np.array([9, 10])
    gt = case.label[10] == 2
    ys, xs = np.nonzero(gt)
    box = (int(ys.min()), int(xs.min()), int(ys.max()), int(xs.max()))
    model.start_object(frames)
    got_box = model.add_box(10, box)
    model.start_object(frames)
    got_mask = model.add_mask(10, gt)
    folder = write_frames(tmp_path / "b", reference_gray(case.image)[frames], "png")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        state = official.init_state(video_path=folder)
        _, _, lb = official.add_new_points_or_box(
            state, frame_idx=1, obj_id=1, box=np.array([box[1], box[0], box[3], box[2]], np.float32)
        )
        official.reset_state(state)
        _, _, lm = official.add_new_mask(state, frame_idx=1, obj_id=1, mask=torch.from_numpy(gt))
    assert got_box.shape == gt.shape and got_box.dtype == bool
    assert np.array_equal(got_box, (lb[0, 0] > 0).numpy())
    assert np.array_equal(got_mask, (lm[0, 0] > 0).numpy())
    assert model.encoder_calls == 1  # slice 10 only, shared by both objects


# -- describe, options ------------------------------------------------------------------------
def test_describe_names_weights_and_settings(model: SAM2Model, checkpoint: Path) -> None:
    d = model.describe()
    assert d["name"] == "sam2.1-hiera-tiny"
    assert d["config"] == CONFIG
    assert d["checkpoint"] == str(checkpoint)
    assert d["checkpoint_sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert d["image_size"] == SIZE and d["device"] == "cpu" and d["window"] == [-1000.0, 1000.0]
    assert d["peak_memory_bytes"] is None  # CPU: no accelerator memory


def test_protocol_hints_and_bad_volumes(model: SAM2Model) -> None:
    model.configure_protocol(frame_codec="jpeg", something_else=1)  # unknown hints are ignored
    assert model.frame_codec == "jpeg" and model.describe()["frame_codec"] == "jpeg"
    model.configure_protocol(frame_codec="raw")
    assert model.frame_codec == "raw"
    with pytest.raises(ConfigError, match="frame_codec must be one of"):
        model.configure_protocol(frame_codec="png")
    vol = np.zeros((2, 8, 8), np.float32)
    vol[1, 2, 3] = np.nan
    with pytest.raises(InputError, match="non-finite"):
        model.set_volume(vol, (1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="Z, Y, X"):
        model.set_volume(np.zeros((8, 8), np.float32), (1.0, 1.0, 1.0))


def test_options_from_strings() -> None:
    o = Sam2Options.parse(model_name="sam2-hiera-small", image_size="512", window="-160,240",
                          device="cpu", cache_device="none", cache_dtype="bf16", config=None)
    assert (o.image_size, o.window) == (512, (-160.0, 240.0))
    assert (o.cache_device, o.cache_dtype, o.config) == (None, "bfloat16", None)
    with pytest.raises(ConfigError, match="unknown parameter 'imagesize' for model 'sam2'; known: cache_device"):
        Sam2Options.parse(imagesize="256")
    with pytest.raises(ConfigError, match="window"):
        Sam2Options.parse(window="240,-160")
    with pytest.raises(ConfigError, match="image_size"):
        Sam2Options.parse(image_size="250")


def test_unknown_name_and_missing_cuda(checkpoint: Path) -> None:
    with pytest.raises(ConfigError, match="unknown SAM2 model 'sam3-hiera-tiny'"):
        SAM2Model("sam3-hiera-tiny", checkpoint=str(checkpoint))
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA device"):
            SAM2Model(checkpoint=str(checkpoint), image_size=str(SIZE), device="cuda")


# -- loading errors ------------------------------------------------------------------------------
def test_missing_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="checkpoint file not found") as exc:
        SAM2Model(checkpoint=str(tmp_path / "nope.pt"))
    assert str(tmp_path / "nope.pt") in str(exc.value) and "\n" not in str(exc.value)


def test_corrupt_checkpoints(tmp_path: Path, checkpoint: Path) -> None:
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"this is not a checkpoint" * 10)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(checkpoint.read_bytes()[: 1 << 20])
    for path in (junk, truncated):
        with pytest.raises(InputError, match="not a loadable checkpoint") as exc:
            SAM2Model(checkpoint=str(path), image_size=str(SIZE))
        assert str(exc.value).startswith(str(path)) and "\n" not in str(exc.value)
    empty = tmp_path / "empty.pt"
    torch.save({"model": {}}, empty)
    with pytest.raises(InputError, match="no model state dict"):
        SAM2Model(checkpoint=str(empty), image_size=str(SIZE))


def test_pickled_code_is_refused(tmp_path: Path) -> None:
    evil = tmp_path / "evil.pt"
    torch.save({"model": {"x": torch.zeros(1)}, "extra": Path("/")}, evil)  # a non-tensor object
    with pytest.raises(InputError, match="not a loadable checkpoint"):
        SAM2Model(checkpoint=str(evil), image_size=str(SIZE))


def test_wrong_config_for_checkpoint(checkpoint: Path) -> None:
    # SAM2.1 weights with the SAM2 config: 2.1 added modules the 2.0 model lacks.
    with pytest.raises(InputError, match="do not fit config configs/sam2/sam2_hiera_t.yaml") as exc:
        SAM2Model("sam2-hiera-tiny", checkpoint=str(checkpoint), image_size=str(SIZE))
    assert "unexpected" in str(exc.value) and "config=" in str(exc.value)
    # SAM2.1 tiny weights with the small config: different depth.
    with pytest.raises(InputError, match="missing"):
        SAM2Model("sam2.1-hiera-small", checkpoint=str(checkpoint), image_size=str(SIZE))


def test_config_from_yaml_file_and_bare_state_dict(tmp_path: Path, checkpoint: Path) -> None:
    """A fine-tune's config given as a file builds the same predictor as the packaged one."""
    import sam2

    src = Path(sam2.__file__).parent / "configs" / "sam2.1" / "sam2.1_hiera_t.yaml"
    cfg = tmp_path / "my_finetune.yaml"
    cfg.write_text(src.read_text())
    bare = tmp_path / "bare.pt"
    torch.save(torch.load(checkpoint, weights_only=True)["model"], bare)
    m = SAM2Model(checkpoint=str(bare), config=str(cfg), image_size=str(SIZE))
    ref = build_video_predictor(CONFIG, SIZE)
    for attr in ("image_size", "binarize_mask_from_pts_for_mem_enc", "multimask_output_in_sam",
                 "non_overlap_masks", "add_all_frames_to_correct_as_cond"):
        assert getattr(m.predictor, attr) == getattr(ref, attr), attr
    assert type(m.predictor).__name__ == "SAM2VideoPredictor"
    assert m.predictor.sam_mask_decoder.dynamic_multimask_via_stability is True
    assert m.predictor.sam_mask_decoder.dynamic_multimask_stability_thresh == 0.98
    sd = torch.load(checkpoint, weights_only=True)["model"]
    assert all(torch.equal(v, sd[k]) for k, v in m.predictor.state_dict().items())
    with pytest.raises(ConfigError, match="cannot build SAM2 from config"):
        SAM2Model(checkpoint=str(bare), config="configs/nope.yaml", image_size=str(SIZE))


def test_offline_without_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import urllib.error

    from annosim.models import sam2_checkpoints

    def offline(url: str, dest: Path) -> None:
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setenv("ANNOSIM_CACHE", str(tmp_path))
    monkeypatch.setattr(sam2_checkpoints, "_download", offline)
    with pytest.raises(ConfigError, match="pass --checkpoint PATH") as exc:
        SAM2Model("sam2.1-hiera-tiny")
    msg = str(exc.value)
    assert "https://dl.fbaipublicfiles.com/segment_anything_2/092824/sam2.1_hiera_tiny.pt" in msg
    assert str(tmp_path / "sam2" / "sam2.1_hiera_tiny.pt") in msg and "\n" not in msg
