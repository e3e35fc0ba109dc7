"""The GPU path without a GPU (issue 17): current device, Ray GPUs, cache placement and pinning,
the bf16 cache round trip, the dtype-following memory estimate, one host copy per pass.

CUDA is stood in for by patched ``torch.cuda`` functions; the device the features are stored on
is stood in for by ``meta`` (a device other than the compute device that holds no data).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from annosim.config import make_spec, validate  # noqa: E402
from annosim.errors import ConfigError  # noqa: E402
from annosim.executors import CaseWorker  # noqa: E402
from annosim.executors import ray as ray_executor  # noqa: E402
from annosim.memory import (  # noqa: E402
    Sam2Itemsizes,
    estimate_case,
    sam2_case_bytes,
    sam2_encoding_bytes,
    sam2_itemsizes,
    sam2_slice_bytes,
    sam2_tracking_bytes,
)
from annosim.models import devices  # noqa: E402
from annosim.models.sam2_features import FeatureCache, FrameFeatureView  # noqa: E402
from annosim.models.sam2_runtime import collect_pass  # noqa: E402

MIB = 1 << 20


@pytest.fixture
def fake_cuda(monkeypatch):
    """torch.cuda as on a 2-GPU machine: set_device / current_device keep a current index."""
    state = {"current": 0, "calls": []}

    def set_device(dev):
        state["calls"].append(str(dev))
        state["current"] = torch.device(dev).index

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", set_device)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: state["current"])
    return state


# -- item 1: the current CUDA device ------------------------------------------------------------
PLUGIN = '''
import torch


class SeesCurrentDevice:
    """Records torch's current CUDA device at build time (what sam2's warm-up tables use)."""

    def __init__(self, device=None):
        self.device = device
        self.current_at_build = torch.cuda.current_device()

    def set_volume(self, volume, spacing): ...
    def start_object(self, frames=None): ...
    def add_clicks(self, z, points, labels, replace=False): ...
    def propagate(self): ...
'''


def test_worker_makes_its_cuda_device_current_before_building_the_model(tmp_path, fake_cuda):
    """Issue 17 item 1: a worker for cuda:1 builds the model with cuda:1 current (was 0)."""
    plugin = tmp_path / "sees_device.py"
    plugin.write_text(PLUGIN)
    worker = CaseWorker(make_spec("", tmp_path, model=f"{plugin}:SeesCurrentDevice"), device="cuda:1")
    assert worker.model.plugin.device == "cuda:1"
    assert worker.model.plugin.current_at_build == 1 and fake_cuda["calls"] == ["cuda:1"]


def test_sam2_sets_the_current_device_before_building_the_predictor(monkeypatch, fake_cuda, tmp_path):
    """Issue 17 item 1, in the adapter itself (a --model-arg device=cuda:1 run in-process)."""
    import annosim.models.sam2_model as sm

    order: list[str] = []

    class Built(Exception):
        pass

    def build(config, image_size):
        order.append(f"build with cuda:{torch.cuda.current_device()} current")
        raise Built

    monkeypatch.setattr(sm, "load_state_dict", lambda path: {})
    monkeypatch.setattr(sm, "sha256_file", lambda path: "0" * 64)
    monkeypatch.setattr(sm, "build_video_predictor", build)
    with pytest.raises(Built):
        sm.SAM2Model("sam2.1-hiera-tiny", checkpoint=str(tmp_path / "w.pt"), device="cuda:1")
    assert fake_cuda["calls"] == ["cuda:1"] and order == ["build with cuda:1 current"]


def test_select_cuda_device_rules(monkeypatch, fake_cuda):
    assert not devices.select_cuda_device("cpu")
    assert not devices.select_cuda_device("cuda")  # the current one already
    assert devices.select_cuda_device("cuda:1") and fake_cuda["current"] == 1
    with pytest.raises(ConfigError, match=r"'cuda:2' requested but torch sees 2 CUDA device"):
        devices.select_cuda_device("cuda:2")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert not devices.select_cuda_device("cuda:1")  # the model refuses it in its own words
    assert fake_cuda["calls"] == ["cuda:1"]


# -- item 2: Ray never runs a CUDA model on the CPU quietly ---------------------------------------
@pytest.mark.parametrize(
    "model, args, gpus_per_case, cluster_gpus, refused",
    [
        ("sam2.1-hiera-tiny", {}, 0.0, 2.0, True),  # default CUDA, cluster has GPUs
        ("sam2.1-hiera-tiny", {}, 0.0, 0.0, False),  # no GPU anywhere: the CPU is the default
        ("sam2.1-hiera-tiny", {"device": "cuda"}, 0.0, 0.0, True),  # asked for CUDA
        ("vista3d", {"device": "cuda:0"}, 0.0, 1.0, True),
        ("sam2.1-hiera-tiny", {}, 1.0, 2.0, False),  # actors reserve a GPU
        ("sam2.1-hiera-tiny", {"device": "cuda"}, 0.5, 1.0, False),
        ("sam2.1-hiera-tiny", {"device": "cpu"}, 0.0, 2.0, False),  # the CPU on purpose
        ("classical", {}, 0.0, 2.0, False),  # a CPU model
    ],
)
def test_ray_gpu_rule(tmp_path, model, args, gpus_per_case, cluster_gpus, refused):
    """Issue 17 item 2: Ray gives num_gpus=0 actors no GPU, so CUDA needs --gpus-per-case."""
    spec = make_spec("", tmp_path, model=model, model_args=args, executor="ray", gpus_per_case=gpus_per_case)
    problem = ray_executor.gpu_problem(spec, cluster_gpus)
    assert (problem is not None) == refused
    if refused:
        assert problem.startswith("--executor ray: ") and "\n" not in problem
        assert "--gpus-per-case 0 Ray hides every GPU" in problem and "give --gpus-per-case 1" in problem


def test_ray_pool_refuses_before_starting_an_actor(tmp_path, monkeypatch):
    class FakeRay:
        remote_calls = 0

        def is_initialized(self):
            return True

        def cluster_resources(self):
            return {"CPU": 4.0, "GPU": 1.0}

        def remote(self, cls):
            FakeRay.remote_calls += 1
            raise AssertionError("no actor may start")

    monkeypatch.setattr(ray_executor, "import_ray", lambda: FakeRay())
    spec = make_spec("", tmp_path, model="sam2.1-hiera-tiny", executor="ray")
    pool = ray_executor.RayPool(validate(spec, check_model=False), 3)
    with pytest.raises(ConfigError, match=r"runs on CUDA by default and the Ray cluster has 1 GPU\(s\)"):
        pool.start()
    assert FakeRay.remote_calls == 0


# -- item 3: where the cache keeps things, pinning, prefetch --------------------------------------
def _encoder(log: list[int], pos_value: float = 0.5):
    """Stand-in encoder: FPN levels (float32) hold the slice number, encodings are constant."""

    def encode(z: int):
        log.append(z)
        return {
            "backbone_fpn": [torch.full((1, 2, 8, 8), float(z) + 0.1), torch.full((1, 4, 4, 4), float(z))],
            "vision_pos_enc": [torch.full((1, 4, 8, 8), pos_value), torch.full((1, 4, 4, 4), pos_value)],
        }

    return encode


def test_cache_keeps_levels_on_the_store_device_and_encodings_on_the_compute_device():
    """Issue 17 item 3: only the per-slice levels go to store_device; the shared encodings stay
    (and are compared) on the compute device."""
    cache = FeatureCache(_encoder([]), torch.device("cpu"), torch.device("meta"))
    cache.fill(3)
    cache.fill(4)
    assert [t.device.type for t in cache._fpn[3]] == ["meta", "meta"]
    assert [t.device.type for t in cache._pos_shared] == ["cpu", "cpu"]
    assert cache._pos_own == {}  # slice 4's encodings compared equal without leaving the cpu
    assert cache.slice_nbytes == 4 * (2 * 64 + 4 * 16) and cache.encoding_nbytes == 4 * (4 * 64 + 4 * 16)
    assert not cache.pin  # nothing to pin without CUDA


def test_cache_pins_host_copies_for_a_cuda_computation(monkeypatch):
    """Issue 17 item 3: host storage for a CUDA device is pinned; without CUDA nothing is."""
    import annosim.models.sam2_features as sf

    assert not devices.can_pin("cpu", "cpu")
    assert not devices.can_pin("cpu", "cuda")  # torch sees no CUDA here: a no-op
    assert not FeatureCache(_encoder([]), torch.device("cuda"), torch.device("cpu")).pin
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    pinned_calls: list[tuple] = []
    monkeypatch.setattr(sf, "pinned", lambda t: pinned_calls.append(tuple(t.shape)) or t)
    cache = FeatureCache(_encoder([]), torch.device("cuda"), torch.device("cpu"))
    assert cache.pin and not FeatureCache(_encoder([]), torch.device("cuda")).pin  # on-device store
    cache._store(torch.ones(1, 2, 8, 8))
    assert pinned_calls == [(1, 2, 8, 8)]


def test_frame_view_prefetches_the_next_frame_of_the_pass():
    """Issue 17 item 3: forward steps prefetch i+1, backward steps i-1, never past the video."""
    cache = FeatureCache(_encoder([]), torch.device("cpu"))
    asked: list[int] = []
    cache.prefetch = asked.append  # type: ignore[method-assign]
    view = FrameFeatureView(cache, np.array([10, 11, 12, 13, 14]))
    for i in (1, 2, 3, 4):  # forward pass from frame 1 (slices 11..14)
        view.get(i)
    for i in (3, 2, 1, 0):  # reverse pass
        view.get(i)
    assert asked == [12, 13, 14, 12, 11, 10]


def test_prefetch_is_a_no_op_without_pinned_host_storage():
    log: list[int] = []
    cache = FeatureCache(_encoder(log), torch.device("cpu"))
    cache.prefetch(5)  # not stored: never runs the encoder
    cache.fill(5)
    cache.prefetch(5)
    assert log == [5] and cache._ahead is None


# -- item 4: bf16 storage on the CPU --------------------------------------------------------------
def test_bf16_cache_round_trip_gives_the_encoder_dtype_back():
    """Issue 17 item 4: stored bf16, loaded as the encoder's float32 (bf16-rounded values)."""
    def encode(z: int):
        return {"backbone_fpn": [torch.tensor([[[[1.0 + 2.0 ** -10, 3.0]]]])],
                "vision_pos_enc": [torch.tensor([[[[0.1]]]])]}

    cache = FeatureCache(encode, torch.device("cpu"), torch.device("cpu"), torch.bfloat16)
    out = cache.get(0)
    assert cache._fpn[0][0].dtype == torch.bfloat16
    assert out["backbone_fpn"][0].dtype == torch.float32
    assert out["backbone_fpn"][0].flatten().tolist() == [1.0, 3.0]  # 1 + 2**-10 rounds to 1 in bf16
    assert out["vision_pos_enc"][0].dtype == torch.float32  # encodings keep the encoder's dtype


@pytest.fixture(scope="module")
def sam2_checkpoint(tmp_path_factory) -> Path:
    pytest.importorskip("sam2")
    from annosim.models.sam2_checkpoints import build_video_predictor

    torch.manual_seed(0)
    model = build_video_predictor("configs/sam2.1/sam2.1_hiera_t.yaml", 256)
    path = tmp_path_factory.mktemp("ckpt") / "tiny256.pt"
    torch.save({"model": model.state_dict()}, path)
    return path


def _volume() -> np.ndarray:
    vol = np.full((4, 40, 40), -500.0, dtype=np.float32)
    vol[:, 12:28, 12:28] = 200.0
    return vol


def test_sam2_with_bf16_cache_runs_on_the_cpu(sam2_checkpoint):
    """Issue 17 item 4: add_clicks + propagate with cache_dtype=bfloat16 on the CPU (crashed
    with 'Input type (c10::BFloat16) and bias type (float)')."""
    from annosim.models.sam2_model import SAM2Model

    model = SAM2Model(checkpoint=str(sam2_checkpoint), image_size="256", device="cpu", cache_dtype="bfloat16")
    model.set_volume(_volume(), (1.0, 1.0, 1.0))
    model.start_object()
    first = model.add_clicks(1, np.array([[20, 20]]), np.array([1]))
    vol = model.propagate()
    assert first.shape == (40, 40) and first.dtype == bool and vol.shape == (4, 40, 40)
    assert model._cache._fpn[1][0].dtype == torch.bfloat16 and model.encoder_calls == 4


# -- item 5: the estimate follows the dtypes ------------------------------------------------------
def test_sam2_estimate_by_hand_float32_and_cuda_bf16():
    """Issue 17 item 5, S=1024. Levels 32x256^2, 64x128^2, 256x64^2; encodings 256 channels at
    the same three sizes; tracking: bf16 memory 64x64^2 + float32 mask 256^2."""
    cpu, cuda, cuda_bf16 = sam2_itemsizes("cpu"), sam2_itemsizes("cuda"), sam2_itemsizes("cuda", True)
    assert cpu == Sam2Itemsizes((4, 4, 4), (4, 4, 4)) and cuda == Sam2Itemsizes((2, 2, 4), (2, 2, 4))
    assert sam2_slice_bytes(1024, cpu) == 32 * 65536 * 4 + 64 * 16384 * 4 + 256 * 4096 * 4 == 16 * MIB
    assert sam2_slice_bytes(1024, cuda) == 32 * 65536 * 2 + 64 * 16384 * 2 + 256 * 4096 * 4 == 10 * MIB
    assert sam2_slice_bytes(1024, cuda_bf16) == 8 * MIB == sam2_slice_bytes(1024, sam2_itemsizes("cpu", True))
    assert sam2_encoding_bytes(1024, cpu) == 256 * (65536 + 16384 + 4096) * 4 == 84 * MIB
    assert sam2_encoding_bytes(1024, cuda) == 256 * (65536 + 16384) * 2 + 256 * 4096 * 4 == 44 * MIB
    assert sam2_encoding_bytes(1024, cuda_bf16) == 44 * MIB  # the encodings keep the encoder's dtype
    assert sam2_tracking_bytes(1024) == 64 * 4096 * 2 + 65536 * 4 == 768 * 1024
    assert sam2_case_bytes(100, 1024, cpu) == 100 * (16 * MIB + 768 * 1024) + 84 * MIB
    assert sam2_case_bytes(200, 1024, cuda) == (200 * 10.75 + 44) * MIB  # the docstring's CT


def test_sam2_adapter_estimate_follows_its_device_and_cache_dtype():
    from annosim.models.sam2_model import SAM2Model

    class FakeSam2:  # the attributes SAM2Model.estimate_memory reads
        image_size = 1024
        device = torch.device("cuda", 1)
        cache_device = torch.device("cuda", 1)
        cache_dtype = None
        estimate_memory = SAM2Model.estimate_memory

    est = estimate_case((40, 100, 100), FakeSam2())
    assert est.model == 40 * (10 * MIB + 768 * 1024) + 44 * MIB and est.model_device == "cuda:1"
    FakeSam2.cache_dtype = torch.bfloat16
    assert estimate_case((40, 100, 100), FakeSam2()).model == 40 * (8 * MIB + 768 * 1024) + 44 * MIB
    FakeSam2.device = FakeSam2.cache_device = torch.device("cpu")
    FakeSam2.cache_dtype = None
    assert estimate_case((40, 100, 100), FakeSam2()).model == 40 * (16 * MIB + 768 * 1024) + 84 * MIB


def test_real_cache_bytes_equal_the_cpu_estimate(sam2_checkpoint):
    """The estimate's level shapes, checked against what the encoder really returns (256 px)."""
    from annosim.models.sam2_model import SAM2Model

    model = SAM2Model(checkpoint=str(sam2_checkpoint), image_size="256", device="cpu")
    model.set_volume(_volume()[:2], (1.0, 1.0, 1.0))
    model._cache.fill(0)
    model._cache.fill(1)
    sizes = sam2_itemsizes("cpu")
    assert model._cache.slice_nbytes == sam2_slice_bytes(256, sizes) == MIB
    assert model._cache.encoding_nbytes == sam2_encoding_bytes(256, sizes)
    assert model.cache_bytes == 2 * MIB + sam2_encoding_bytes(256, sizes)
    model.release_case()  # before the next case's memory check
    assert model.cache_bytes == 0 and model.encoder_calls == 0


def test_release_returns_cached_cuda_blocks(monkeypatch):
    """Issue 17 item 5: the allocator's cache is emptied before the next memory check."""
    emptied: list[bool] = []
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: emptied.append(True))
    devices.release_cached_memory("cpu")
    assert emptied == []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    devices.release_cached_memory(torch.device("cuda", 0))
    assert emptied == [True]


# -- item 7: one host copy per pass ---------------------------------------------------------------
def test_collect_pass_thresholds_on_the_device_and_copies_once():
    logits = [torch.tensor([[[[0.5, -1.0], [0.0, 2.0]]]]), torch.tensor([[[[-0.1, 0.1], [3.0, -3.0]]]])]
    idx, masks = collect_pass((i, [1], lg) for i, lg in zip((4, 3), logits))
    assert idx.tolist() == [4, 3] and masks.dtype == bool
    assert masks.tolist() == [[[True, False], [False, True]], [[False, True], [True, False]]]
    idx, masks = collect_pass(iter(()))
    assert idx.size == 0 and masks.size == 0
