"""The results folder never loses, mixes or misplaces a result (issue 15).

Each test reproduces one failure seen before the fix and names the rule it checks:

- order: two ``--workers 2`` runs, with the first case made slow so that later cases finish
  first, write byte-identical rounds.csv (timing columns aside) and prompts.jsonl, equal to a
  sequential run's (the reorder buffer of :class:`annosim.engine.driver.StoreSink`).

Data: a CSV manifest of three real cases from ../shared/data (totalseg-abdomen reduced to spleen,
kidney_right, aorta; STS_002; STS_019), the ``fg-only`` setting and the plugin model
``tests/plugin_models.py:ThresholdGrow``: 5 units. Hand-built folders need no data.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from annosim.cli import main
from annosim.engine.driver import RunReport, StoreSink
from annosim.schema import UnitKey, UnitResult
from results_helpers import manifest_run_args, rows_without_timing

TESTS = Path(__file__).resolve().parent

SLOW_FIRST = f'''
import sys, time
sys.path.insert(0, {str(TESTS)!r})
from plugin_models import ThresholdGrow


class SlowFirst(ThresholdGrow):
    """ThresholdGrow that sleeps `slow` seconds in set_volume for volumes of `slow_slices` slices."""

    def __init__(self, slow_slices=-1, slow=0, **kwargs):
        super().__init__(**kwargs)
        self.slow_slices, self.slow = int(slow_slices), float(slow)

    def set_volume(self, volume, spacing):
        super().set_volume(volume, spacing)
        if volume.shape[0] == self.slow_slices:
            time.sleep(self.slow)
'''


@pytest.fixture(scope="module")
def manifest(shared_data, tmp_path_factory) -> Path:
    """totalseg-abdomen reduced to spleen, kidney_right, aorta (30 slices); STS_002; STS_019."""
    root = tmp_path_factory.mktemp("data")
    ts = shared_data / "totalseg-abdomen"
    seg = nib.load(ts / "seg.nii.gz")
    data = np.asarray(seg.dataobj)
    nib.save(nib.Nifti1Image(np.where(np.isin(data, [1, 2, 52]), data, 0).astype(np.uint8), seg.affine, seg.header),
             root / "seg3.nii.gz")
    (root / "labels.json").write_text((ts / "labels.json").read_text())
    lines = ["image,label,case", f"{ts / 'ct.nii.gz'},{root / 'seg3.nii.gz'},abdomen"]
    for c in ("STS_002", "STS_019"):
        d = shared_data / "ibsi-sts" / c
        lines.append(f"{d / 'CT_image.nii.gz'},{d / 'CT_mask.nii.gz'},{c}")
    (root / "cases.csv").write_text("\n".join(lines) + "\n")
    return root / "cases.csv"


@pytest.fixture(scope="module")
def sequential(manifest, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("seq") / "run"
    assert main(manifest_run_args(manifest, out)) == 0
    return out


# -- order ------------------------------------------------------------------------------------
class _Bar:
    def set_postfix(self, **kw): ...
    def update(self, n): ...
    def write(self, *a, **kw): ...
    def set_description(self, s): ...


class _Store:
    """Records the order of write_unit calls."""

    def __init__(self) -> None:
        self.written: list[UnitKey] = []

    @property
    def done_units(self) -> set[UnitKey]:
        return set(self.written)

    def is_done(self, key: UnitKey) -> bool:
        return key in self.written

    def write_unit(self, key, rows, prompts) -> None:
        self.written.append(key)


class _Ref:
    def __init__(self, case_id: str) -> None:
        self.case_id = case_id


def test_order_sink_commits_units_in_manifest_order_whatever_the_arrival():
    store = _Store()
    sink = StoreSink(store, RunReport(Path("/nonexistent")), False, _Bar(), ["a", "b", "c"])
    k = lambda case, label: UnitKey(case, label, "fg-only", "he2024")  # noqa: E731
    sink.unit(UnitResult(k("c", 1)), [])
    sink.unit(UnitResult(k("b", 1)), [])
    sink.case_done(_Ref("c"))
    assert store.written == []  # b and c wait for a
    assert sink.done_for("b") == {k("b", 1)}  # a retried case does not recompute a buffered unit
    sink.unit(UnitResult(k("a", 1)), [])
    assert store.written == [k("a", 1)]  # the first case is written at once
    sink.unit(UnitResult(k("b", 1)), [])  # sent again by a retry: ignored
    sink.case_done(_Ref("a"))
    assert store.written == [k("a", 1), k("b", 1)]
    sink.unit(UnitResult(k("b", 2)), [])
    sink.case_done(_Ref("b"))
    assert store.written == [k("a", 1), k("b", 1), k("b", 2), k("c", 1)]


def test_order_two_worker_runs_are_byte_identical_to_a_sequential_one(manifest, sequential, tmp_path):
    plugin = tmp_path / "slow.py"
    plugin.write_text(SLOW_FIRST)
    outs = []
    for i in range(2):
        out = tmp_path / f"w{i}"
        # the first case (30 slices) is slow: the other worker finishes STS_002 and STS_019 first
        assert main(manifest_run_args(manifest, out, "--workers", "2", "--model-arg", "slow_slices=30",
                                      "--model-arg", "slow=1.5", model=f"{plugin}:SlowFirst")) == 0
        outs.append(out)
    for out in outs:
        assert rows_without_timing(out) == rows_without_timing(sequential)
        assert (out / "prompts.jsonl").read_bytes() == (sequential / "prompts.jsonl").read_bytes()
    assert [r[0] for r in rows_without_timing(outs[0])][:1] == ["abdomen"]
