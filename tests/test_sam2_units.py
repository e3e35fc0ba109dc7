"""SAM2 adapter parts without a model: frames, the feature cache, the weights registry/cache."""

from __future__ import annotations

import hashlib
import urllib.error
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from annosim.errors import ConfigError, InputError  # noqa: E402
from annosim.models import sam2_checkpoints as ck  # noqa: E402
from annosim.models.sam2_features import FeatureCache, FrameFeatureView  # noqa: E402
from annosim.models.sam2_frames import SliceFrames, hu_to_uint8, jpeg_round_trip  # noqa: E402


# -- frames --------------------------------------------------------------------------------------
def test_hu_to_uint8_hand_values() -> None:
    hu = np.array([[[-3024.0, -1000.0, -999.0, 0.0, 7.0, 999.0, 1000.0, 3071.0]]], dtype=np.float32)
    # (hu + 1000) / 2000 * 255, clipped, truncated: -999 -> 0.1275 -> 0; 7 -> 128.39 -> 128
    assert hu_to_uint8(hu).tolist() == [[[0, 0, 0, 127, 128, 254, 255, 255]]]
    assert hu_to_uint8(hu, (0.0, 255.0)).tolist() == [[[0, 0, 0, 0, 7, 255, 255, 255]]]
    with pytest.raises(ValueError, match="lo < hi"):
        hu_to_uint8(hu, (10.0, 10.0))


def test_hu_to_uint8_matches_monai_scaling_on_real_ct(shared_data: Path) -> None:
    """The reference's frames: ScaleIntensityRange(-1000, 1000 -> 0, 255, clip) then astype(uint8)."""
    import nibabel as nib
    from monai.transforms import ScaleIntensityRange

    ct = np.asarray(nib.load(shared_data / "totalseg-abdomen" / "ct.nii.gz").dataobj).astype(np.float32)
    ref = np.asarray(ScaleIntensityRange(-1000, 1000, 0, 255, clip=True)(ct)).astype(np.uint8)
    assert np.array_equal(hu_to_uint8(ct), ref)


def _sam2_folder_frames(folder: Path, size: int) -> torch.Tensor:
    from sam2.utils.misc import load_video_frames

    images, _, _ = load_video_frames(
        str(folder), size, offload_video_to_cpu=True, compute_device=torch.device("cpu")
    )
    return images


@pytest.fixture(scope="module")
def gray_slices(shared_data: Path) -> np.ndarray:
    import nibabel as nib

    ct = np.asarray(nib.load(shared_data / "totalseg-abdomen" / "ct.nii.gz").dataobj).astype(np.float32)
    return hu_to_uint8(np.transpose(ct, (2, 0, 1))[10:13])  # 3 slices (122 x 101)


def test_raw_frames_equal_sam2_folder_reading(gray_slices: np.ndarray, tmp_path: Path) -> None:
    pytest.importorskip("sam2")
    from PIL import Image

    for i, g in enumerate(gray_slices):  # lossless PNG data under .jpg names (opened by content)
        Image.fromarray(np.repeat(g[..., None], 3, axis=2)).save(tmp_path / f"{i:05d}.jpg", format="PNG")
    want = _sam2_folder_frames(tmp_path, 256)
    frames = SliceFrames(gray_slices, 256, "raw")
    got = torch.stack([frames.tensor(z) for z in range(3)])
    assert got.dtype == torch.float32 and got.shape == (3, 3, 256, 256)
    assert torch.equal(got, want)


def test_jpeg_frames_equal_sam2_reading_reference_jpegs(gray_slices: np.ndarray, tmp_path: Path) -> None:
    pytest.importorskip("sam2")
    from PIL import Image

    for i, g in enumerate(gray_slices):  # as the reference: grey JPEG, Pillow's default quality
        Image.fromarray(g).save(tmp_path / f"{i + 1:04d}.jpg")
    want = _sam2_folder_frames(tmp_path, 256)
    frames = SliceFrames(gray_slices, 256, "jpeg")
    got = torch.stack([frames.tensor(z) for z in range(3)])
    assert torch.equal(got, want)
    # ... and the round trip is lossy, so the codec matters.
    raw = SliceFrames(gray_slices, 256, "raw")
    assert not torch.equal(got, torch.stack([raw.tensor(z) for z in range(3)]))


def test_jpeg_round_trip_is_lossy_but_close(gray_slices: np.ndarray) -> None:
    back = jpeg_round_trip(gray_slices[1])
    assert back.shape == gray_slices[1].shape and back.dtype == np.uint8
    diff = np.abs(back.astype(int) - gray_slices[1].astype(int))
    assert diff.max() > 0
    assert diff.mean() < 3.0


def test_slice_frames_validates() -> None:
    with pytest.raises(ValueError, match="codec"):
        SliceFrames(np.zeros((1, 4, 4), np.uint8), 64, "png")
    with pytest.raises(ValueError, match="uint8"):
        SliceFrames(np.zeros((1, 4, 4), np.float32), 64)
    f = SliceFrames.from_hu(np.zeros((2, 5, 7), np.float32), 64)
    assert (f.num_slices, f.height, f.width) == (2, 5, 7)
    assert f.gray.max() == 127


# -- feature cache -------------------------------------------------------------------------------
def _fake_encoder(log: list[int]):
    """Encoder stand-in: level values encode the slice; positional encodings are constant."""
    pos = [torch.full((1, 4, 8, 8), 0.5), torch.full((1, 4, 4, 4), 0.25)]

    def encode(z: int):
        log.append(z)
        return {
            "backbone_fpn": [
                torch.full((1, 2, 8, 8), float(z)),
                torch.full((1, 4, 4, 4), float(z) + 0.5),
            ],
            "vision_pos_enc": [p.clone() for p in pos],
            "vision_features": torch.zeros(1),
        }

    return encode


def test_feature_cache_encodes_each_slice_once() -> None:
    log: list[int] = []
    cache = FeatureCache(_fake_encoder(log), torch.device("cpu"))
    a = cache.get(3)
    b = cache.get(3)
    cache.get(5)
    assert log == [3, 5] and cache.encoder_calls == 2 and len(cache) == 2
    assert torch.equal(a["backbone_fpn"][1], torch.full((1, 4, 4, 4), 3.5))
    assert torch.equal(b["backbone_fpn"][0], a["backbone_fpn"][0])
    assert set(a) == {"backbone_fpn", "vision_pos_enc"}
    # Positional encodings stored once: 2 slices x (2*64 + 4*16) fpn floats + (4*64 + 4*16) pos floats.
    assert cache.nbytes == 4 * (2 * (2 * 64 + 4 * 16) + (4 * 64 + 4 * 16))
    cache.clear()
    cache.get(3)
    assert log == [3, 5, 3] and cache.encoder_calls == 3


def test_feature_cache_store_dtype_stores_bf16_and_loads_the_encoder_dtype() -> None:
    """cache_dtype=bfloat16: FPN levels kept as bf16, handed back in the encoder's dtype (float32
    here); the positional encodings keep the encoder's dtype (issue 17 item 4)."""
    cache = FeatureCache(_fake_encoder([]), torch.device("cpu"), torch.device("cpu"), torch.bfloat16)
    out = cache.get(2)
    assert cache._fpn[2][0].dtype == torch.bfloat16
    assert out["backbone_fpn"][0].dtype == torch.float32
    assert out["vision_pos_enc"][0].dtype == torch.float32


def test_frame_view_maps_video_frames_to_slices() -> None:
    log: list[int] = []
    cache = FeatureCache(_fake_encoder(log), torch.device("cpu"))
    view = FrameFeatureView(cache, np.array([4, 9, 10]))
    image, feats = view.get(1, (None, None))
    assert log == [9] and feats["backbone_fpn"][0][0, 0, 0, 0].item() == 9.0
    assert image.shape == (1, 0, 0, 0)
    assert view.get(3, (None, None)) == (None, None)  # beyond the video: the official miss value
    assert list(view) == [1] and len(view) == 1
    with pytest.raises(KeyError):
        view[-1]


# -- weights registry and cache --------------------------------------------------------------
def test_registry_names_configs_urls() -> None:
    assert len(ck.VARIANTS) == 8
    v = ck.get_variant("sam2.1-hiera-base-plus")
    assert v.config == "configs/sam2.1/sam2.1_hiera_b+.yaml"
    assert v.url == "https://dl.fbaipublicfiles.com/segment_anything_2/092824/sam2.1_hiera_base_plus.pt"
    v = ck.get_variant("sam2-hiera-large")
    assert v.config == "configs/sam2/sam2_hiera_l.yaml"
    assert v.url == "https://dl.fbaipublicfiles.com/segment_anything_2/072824/sam2_hiera_large.pt"
    import sam2

    pkg = Path(sam2.__file__).parent
    assert all((pkg / x.config).is_file() for x in ck.VARIANTS.values())
    with pytest.raises(ConfigError, match="known: sam2-hiera-tiny"):
        ck.get_variant("sam2-hiera-huge")


def test_cache_dir_honours_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ANNOSIM_CACHE", str(tmp_path))
    assert ck.cache_dir() == tmp_path / "sam2"
    monkeypatch.delenv("ANNOSIM_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert ck.cache_dir() == tmp_path / "home" / ".cache" / "annosim" / "sam2"


def _variant(sha: str | None = None) -> ck.Sam2Variant:
    return ck.Sam2Variant("fake", "configs/x.yaml", "fake.pt", "https://example.invalid/fake.pt", sha)


def test_fetch_downloads_once_and_pins_digest(tmp_path: Path) -> None:
    calls: list[str] = []

    def download(url: str, dest: Path) -> None:
        calls.append(url)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(b"weights")

    path = ck.fetch_checkpoint(_variant(), tmp_path, download)
    assert path == tmp_path / "fake.pt" and calls == ["https://example.invalid/fake.pt"]
    digest = hashlib.sha256(b"weights").hexdigest()
    assert (tmp_path / "fake.pt.sha256").read_text().strip() == digest
    assert ck.fetch_checkpoint(_variant(), tmp_path, download) == path
    assert len(calls) == 1  # cached
    path.write_bytes(b"weightz")  # corrupted in the cache
    with pytest.raises(InputError, match="cached checkpoint is corrupt"):
        ck.fetch_checkpoint(_variant(), tmp_path, download)


def test_fetch_rejects_wrong_published_digest(tmp_path: Path) -> None:
    def download(url: str, dest: Path) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(b"tampered")

    with pytest.raises(ConfigError, match="expected 00"):
        ck.fetch_checkpoint(_variant("00" * 32), tmp_path, download)
    assert not (tmp_path / "fake.pt").exists()
    good = hashlib.sha256(b"tampered").hexdigest()
    assert ck.fetch_checkpoint(_variant(good), tmp_path, download) == tmp_path / "fake.pt"


def test_fetch_offline_says_how_to_pass_a_file(tmp_path: Path) -> None:
    def offline(url: str, dest: Path) -> None:
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    with pytest.raises(ConfigError) as exc:
        ck.fetch_checkpoint(_variant(), tmp_path, offline)
    msg = str(exc.value)
    assert msg == (
        "cannot download fake weights from https://example.invalid/fake.pt "
        "([Errno -3] Temporary failure in name resolution); download the file yourself and pass "
        f"--checkpoint PATH, or put it at {tmp_path / 'fake.pt'}"
    )
    assert not any(tmp_path.iterdir())
