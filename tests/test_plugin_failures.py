"""A plugin model that raises gives an errors.jsonl line with the stage where it raised, rows for
the good cases, exit status 1 and no traceback, whatever the executor (in-process, --workers 2,
Ray). Runs on synthetic NIfTI cases (conftest.synthetic_manifest), so it needs no ../shared."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from annosim.cli import main
from results_helpers import manifest_run_args

TESTS = Path(__file__).resolve().parent

FAILING = f'''
import sys
sys.path.insert(0, {str(TESTS)!r})
from plugin_models import ThresholdGrow


class Failing(ThresholdGrow):
    """Raises KeyError in set_volume on 6-slice volumes, ValueError in add_clicks on 7-slice
    ones, RuntimeError in propagate on 8-slice ones; a metric raises on label 2."""

    def set_volume(self, volume, spacing):
        if volume.shape[0] == 6:
            raise KeyError("no such volume")
        super().set_volume(volume, spacing)

    def add_clicks(self, z, points, labels, replace=False):
        if self.shape[0] == 7:
            raise ValueError("bad click")
        return super().add_clicks(z, points, labels, replace)

    def propagate(self):
        if self.shape[0] == 8:
            raise RuntimeError("propagation diverged")
        return super().propagate()
'''

METRIC = '''
def voxels(pred, gt, spacing):
    """Predicted voxels; raises on objects of fewer than 200 truth voxels."""
    if gt.sum() < 200:
        raise ZeroDivisionError("too small")
    return float(pred.sum())
'''


@pytest.fixture(scope="module")
def plugins(tmp_path_factory):
    root = tmp_path_factory.mktemp("plugins")
    (root / "failing.py").write_text(FAILING)
    (root / "metric.py").write_text(METRIC)
    return root


def _errors(out: Path) -> dict[str, dict]:
    lines = [json.loads(l) for l in (out / "errors.jsonl").read_text().splitlines()]
    return {f"{e['case']}:{e.get('label')}": e for e in lines}


@pytest.mark.parametrize("executor", ["in-process", "workers-2", "ray"])
def test_a_raising_plugin_is_an_error_line_per_case_with_its_stage(executor, synthetic_manifest, plugins,
                                                                   tmp_path, capsys, request):
    extra: list[str] = []
    if executor == "workers-2":
        extra = ["--workers", "2"]
    elif executor == "ray":
        request.getfixturevalue("ray_session")
        extra = ["--executor", "ray", "--workers", "2"]
    out = tmp_path / "run"
    args = manifest_run_args(synthetic_manifest, out, "--protocol", "he2024", "--protocol-arg", "rounds=2",
                             *extra, model=f"{plugins / 'failing.py'}:Failing")
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    errors = _errors(out)
    # set_volume ends the case (one line, no label); add_clicks and propagate fail each unit
    assert errors["syn6:None"]["stage"] == "model" and "set_volume: KeyError" in errors["syn6:None"]["error"]
    for label in (1, 2):
        assert errors[f"syn7:{label}"]["stage"] == "model"
        assert "add_clicks: ValueError: bad click" in errors[f"syn7:{label}"]["error"]
        assert errors[f"syn8:{label}"]["stage"] == "model"
        assert "propagate: RuntimeError: propagation diverged" in errors[f"syn8:{label}"]["error"]
    assert len(errors) == 5
    rows = (out / "rounds.csv").read_text().strip().splitlines()[1:]
    assert {(r.split(",")[0], r.split(",")[1]) for r in rows} == {("syn9", "1"), ("syn9", "2")}


def test_good_cases_keep_their_rows_and_a_raising_metric_is_one_unit_error(synthetic_manifest, plugins,
                                                                           tmp_path, capsys):
    out = tmp_path / "run"
    args = manifest_run_args(synthetic_manifest, out, "--protocol", "he2024", "--protocol-arg", "rounds=2",
                             "--metric", f"{plugins / 'metric.py'}:voxels")
    assert main(args) == 1
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    errors = _errors(out)
    # label 2 (6 x 8 x 3 = 144 voxels) fails its metric in every case; label 1 (>= 240) gets rows
    assert sorted(errors) == ["syn6:2", "syn7:2", "syn8:2", "syn9:2"]
    assert all(e["stage"] == "metric" and "ZeroDivisionError: too small" in e["error"] for e in errors.values())
    header, *rows = (out / "rounds.csv").read_text().splitlines()
    col = header.split(",").index("voxels")
    assert {r.split(",")[0] for r in rows} == {"syn6", "syn7", "syn8", "syn9"}
    assert all(float(r.split(",")[col]) > 0 for r in rows)
    # the report's summary and HTML page carry the user metric
    rep = tmp_path / "report"
    assert main(["report", str(out), "--out", str(rep)]) == 0
    summary = (rep / "summary.csv").read_text().splitlines()
    head = summary[0].split(",")
    assert "voxels" in head and summary[1].split(",")[head.index("voxels")] == "420.0"  # (240+360+480+600)/4
    assert "voxels" in (rep / "report.html").read_text()


def test_propagate_pass_default_restricts_propagate_to_the_visited_frames():
    """A model without pass-level control: one pass = propagate() on frames >= start (forward)
    or <= start (reverse), within the object's frames."""
    import numpy as np

    from annosim.models.base import as_model

    class Plain:
        def set_volume(self, volume, spacing):
            self.shape = volume.shape

        def start_object(self, frames=None):
            self.frames = frames

        def add_clicks(self, z, points, labels, replace=False):
            return np.zeros(self.shape[1:], bool)

        def propagate(self):
            return np.ones(self.shape, bool)

    m = as_model(Plain())
    m.set_volume(np.zeros((6, 2, 2), np.float32), (1.0, 1.0, 1.0))
    m.start_object(np.array([1, 2, 3, 4]))
    assert m.propagate_pass(2).any(axis=(1, 2)).tolist() == [False, False, True, True, True, False]
    assert m.propagate_pass(2, reverse=True).any(axis=(1, 2)).tolist() == [False, True, True, False, False, False]
