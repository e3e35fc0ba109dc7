"""The results folder never loses, mixes or misplaces a result (issue 15).

Each test reproduces one failure seen before the fix and names the rule it checks:

- journal: a deleted journal is refused (and ``annosim repair`` rebuilds it); a newline in a
  case id or label name counts CSV records, not lines; a garbled last line of each file drops the
  last unit with a one-line notice; damage further back is refused; control characters in case
  ids and label names are refused when the dataset is opened.
- write failures: a disk full in the middle of a unit (the writer patched to raise ENOSPC) and a
  read-only run.json stop with one line, exit 2, no temporary file; a rerun resumes exactly;
  ``report`` reads only committed units.
- paths: case ids ``../../../x`` and ``/abs/...`` with ``--save-predictions`` write only under
  ``--out``, under stable safe names recorded in the journal; a link pointing out is refused.
- fingerprints: a label file replaced between a ``--limit 1`` run and the full rerun is refused,
  naming the file; ``--allow-changed-data`` recomputes that case (rows equal a fresh run on the
  new data); ``--verify-data`` compares content, so a touched but equal file is accepted.
- memory: a 1 MB label file whose header declares 1024^3 voxels is refused from the headers
  (stage ``read``) without a voxel of it being read.
- configuration is not code: a SAM2 config whose ``_target_`` is ``builtins.open`` (write mode)
  is refused with one line and creates no file; an official config passes the check.
- order: two ``--workers 2`` runs, with the first case made slow so that later cases finish
  first, write byte-identical rounds.csv (timing columns aside) and prompts.jsonl, equal to a
  sequential run's (the reorder buffer of :class:`annosim.engine.driver.StoreSink`).

Data: a CSV manifest of three real cases from ../shared/data (totalseg-abdomen reduced to spleen,
kidney_right, aorta; STS_002; STS_019), the ``fg-only`` setting and the plugin model
``tests/plugin_models.py:ThresholdGrow``: 5 units. Hand-built folders need no data.
"""

from __future__ import annotations

import csv
import errno
import os
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from annosim.cli import main
from annosim.data.layouts import open_dataset
from annosim.engine.driver import RunReport, StoreSink
from annosim.errors import ConfigError, InputError, ResultsFolderError, WriteFailed
from annosim.report.results_io import load_predictions, read_run
from annosim.results import ROUND_COLUMNS, ResultsFolder, read_jsonl, repair, writing
from annosim.schema import UnitKey, UnitResult, prediction_path, prompt_record, safe_component
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

    def write_unit(self, key, rows, prompts, extra=None) -> None:
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


# -- journal-first integrity -----------------------------------------------------------------
CONFIG = {"protocols": ["p"]}


def _rows(case: str, label: int, n: int, name: str = "liver") -> list[dict]:
    base = {c: 0 for c in ROUND_COLUMNS}
    return [{**base, "case": case, "label": label, "label_name": name, "setting": "full", "protocol": "he2024",
             "round": r + 1, "dice": 0.5 + r / 10, "model_seconds": 0.25} for r in range(n)]


def _prompts(case: str, label: int, n: int) -> list[dict]:
    key = UnitKey(case, label, "full", "he2024")
    return [prompt_record(key, r + 1, {"kind": "point", "z": 3, "y": 4, "x": 5, "positive": True}) for r in range(n)]


def _folder(path: Path, units: list[tuple[str, int, int]], name: str = "liver") -> Path:
    """A hand-built folder: units (case, label, rounds), each with one prompt a round."""
    with ResultsFolder(path).open(CONFIG, {"started": "t0"}) as store:
        for case, label, n in units:
            store.write_unit(UnitKey(case, label, "full", "he2024"), _rows(case, label, n, name),
                             _prompts(case, label, n))
    return path


def _reopen(path: Path) -> tuple[set[UnitKey], list[str]]:
    with ResultsFolder(path).open(CONFIG, {"started": "t1"}) as store:
        return store.done_units, list(store.notices)


def _keys(*units: tuple[str, int]) -> set[UnitKey]:
    return {UnitKey(c, l, "full", "he2024") for c, l in units}


def _records(path: Path) -> int:
    with open(path / "rounds.csv", newline="") as fh:
        return sum(1 for _ in csv.reader(fh)) - 1


def test_journal_deleted_is_refused_with_the_repair_command(tmp_path, capsys):
    out = _folder(tmp_path / "run", [("a", 1, 2), ("b", 1, 3)])
    before = (out / "rounds.csv").read_bytes()
    (out / "units.jsonl").unlink()
    with pytest.raises(ResultsFolderError, match=r"units.jsonl is missing but the data files hold 10 records; "
                                                 r".*annosim repair"):
        _reopen(out)
    assert (out / "rounds.csv").read_bytes() == before  # nothing cut away
    assert main(["repair", str(out)]) == 0
    assert "journal rebuilt with 1 complete units (2 rows, 2 prompts)" in capsys.readouterr().out
    assert _reopen(out)[0] == _keys(("a", 1))  # the last unit cannot be proven complete: recomputed


def test_journal_repair_keeps_the_last_unit_the_old_journal_confirms(tmp_path):
    out = _folder(tmp_path / "run", [("a", 1, 2), ("b", 1, 3)])
    with open(out / "units.jsonl", "a") as fh:
        fh.write('{"case": "c", "lab')
    assert "2 complete units (5 rows, 5 prompts)" in repair(out)
    assert _reopen(out) == (_keys(("a", 1), ("b", 1)), [])


def test_journal_unrepairable_folder_is_moved_aside(tmp_path):
    out = _folder(tmp_path / "run", [("a", 1, 2), ("b", 1, 1)])
    header, a1, *rest = (out / "rounds.csv").read_bytes().splitlines(keepends=True)
    with open(out / "rounds.csv", "ab") as fh:
        fh.write(a1)  # a's rows split in two: not one unit
    (out / "units.jsonl").unlink()
    line = repair(out)
    aside = next(tmp_path.glob("run.damaged-*"))
    assert f"moved the folder to {aside}" in line and not out.exists()


def test_journal_newline_in_a_case_id_counts_csv_records_not_lines(tmp_path):
    out = _folder(tmp_path / "run", [("a\nb", 1, 2), ("c", 1, 3)], name="left\nkidney")
    assert _records(out) == 5
    assert _reopen(out) == (_keys(("a\nb", 1), ("c", 1)), [])
    assert _records(out) == 5


@pytest.mark.parametrize("name", ["rounds.csv", "prompts.jsonl", "units.jsonl"])
def test_journal_garbled_last_line_drops_the_last_unit_with_a_notice(tmp_path, name):
    out = _folder(tmp_path / "run", [("a", 1, 2), ("b", 1, 3)])
    data = (out / name).read_bytes()
    cut = data[:-1].rfind(b"\n") + 1
    (out / name).write_bytes(data[:cut] + b'b,1,li"ver,\x00 garbled\n')
    done, notices = _reopen(out)
    assert done == _keys(("a", 1))
    assert len(notices) == 1 and "dropped what followed the last intact committed unit" in notices[0]
    assert _records(out) == 2 and len(read_jsonl(out / "prompts.jsonl")) == 2
    assert len(read_jsonl(out / "units.jsonl")) == 1


def test_journal_damage_before_the_last_unit_is_refused(tmp_path):
    out = _folder(tmp_path / "run", [("a", 1, 2), ("b", 1, 3), ("c", 1, 1)])
    lines = (out / "units.jsonl").read_bytes().splitlines(keepends=True)
    (out / "units.jsonl").write_bytes(lines[0] + b"garbage\n" + lines[2])
    with pytest.raises(ResultsFolderError, match=r"units.jsonl: line 2 is not a unit record; run `annosim repair"):
        _reopen(out)


def test_journal_garbled_tail_of_the_journal_is_not_a_traceback(sequential, tmp_path, manifest, capsys):
    out = tmp_path / "run"
    shutil.copytree(sequential, out)
    with open(out / "units.jsonl", "ab") as fh:
        fh.write(b"\xff\xfe not json\n")
    assert main(manifest_run_args(manifest, out)) == 0
    err = capsys.readouterr().err
    assert "dropped what followed the last intact committed unit (" in err and "Traceback" not in err
    assert rows_without_timing(out) == rows_without_timing(sequential)


@pytest.mark.parametrize("where", ["case", "label"])
def test_journal_control_characters_in_names_are_refused_at_open(tmp_path, where):
    img = tmp_path / "a.nii.gz"
    (tmp_path / "m.csv").write_text('image,label,case\n' + (f'{img},{img},"x\ny"\n' if where == "case" else
                                                              f"{img},{img},ok\n"))
    names = '{"1": "left\\tkidney"}' if where == "label" else None
    with pytest.raises(InputError, match="holds the control character"):
        open_dataset(str(tmp_path / "m.csv"), data_root=tmp_path, label_names=names)


# -- write failures ----------------------------------------------------------------------------
def test_write_failure_no_space_is_one_line_exit_2_and_a_rerun_resumes(manifest, sequential, tmp_path,
                                                                       monkeypatch, capsys):
    out = tmp_path / "run"
    real = ResultsFolder._append
    calls = []

    def failing(path, text):
        calls.append(path.name)
        if len(calls) < 5:
            return real(path, text)
        with writing(path):  # half the text lands, then the disk is full
            with open(path, "a") as fh:
                fh.write(text[: len(text) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ResultsFolder, "_append", staticmethod(failing))
    assert main(manifest_run_args(manifest, out)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].endswith("cannot write (No space left on device); nothing committed was lost; "
                            "free space and rerun the same command to resume")
    assert not any("Traceback" in line for line in err)
    assert not list(out.glob("*.tmp"))
    monkeypatch.setattr(ResultsFolder, "_append", staticmethod(real))
    assert main(manifest_run_args(manifest, out)) == 0
    assert rows_without_timing(out) == rows_without_timing(sequential)
    assert (out / "prompts.jsonl").read_bytes() == (sequential / "prompts.jsonl").read_bytes()


def test_write_failure_of_run_json_leaves_no_temporary_file(tmp_path, monkeypatch):
    def replace(src, dst):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr("annosim.results.os.replace", replace)
    with pytest.raises(WriteFailed, match=r"run.json: cannot write \(Read-only file system\); nothing committed "
                                          r"was lost; make the folder writable and rerun"):
        ResultsFolder(tmp_path / "run").open(CONFIG, {"started": "t0"})
    monkeypatch.undo()
    assert not (tmp_path / "run" / "run.json.tmp").exists()


def test_write_failure_report_reads_only_committed_units(tmp_path):
    out = _folder(tmp_path / "run", [("a", 1, 2), ("b", 1, 3)])
    with open(out / "rounds.csv", "a") as fh:  # a unit being written: rows but no journal line yet
        fh.write("c,1,liver,full,he2024,1,0,0,0.5,0,0,0,0,0.25\n")
    rounds = read_run(out).rounds
    assert sorted(set(rounds["case"])) == ["a", "b"] and len(rounds) == 5


# -- paths -------------------------------------------------------------------------------------
def test_paths_hostile_case_ids_stay_under_out(shared_data, tmp_path):
    escape = tmp_path / "escaped"
    lines = ["image,label,case"]
    for c, case_id in (("STS_002", "../../../../escaped/x"), ("STS_019", str(escape / "abs"))):
        d = shared_data / "ibsi-sts" / c
        lines.append(f"{d / 'CT_image.nii.gz'},{d / 'CT_mask.nii.gz'},{case_id}")
    (tmp_path / "cases.csv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "a" / "b" / "run"
    assert main(manifest_run_args(tmp_path / "cases.csv", out, "--save-predictions")) == 0
    assert not escape.exists()
    units = read_jsonl(out / "units.jsonl")
    assert [u["predictions"] for u in units] == [
        f"predictions/{safe_component('../../../../escaped/x')}/he2024__1__fg-only.npz",
        f"predictions/{safe_component(str(escape / 'abs'))}/he2024__1__fg-only.npz"]
    assert units[0]["predictions"].startswith("predictions/escaped_x-")
    assert all((out / u["predictions"]).is_file() for u in units)
    assert sorted(p.relative_to(tmp_path).parts[0] for p in tmp_path.rglob("*.npz")) == ["a", "a"]
    assert load_predictions(out, "../../../../escaped/x", 1, "fg-only", "he2024").keys()  # found where it was written


def test_paths_a_link_pointing_out_of_the_folder_is_refused(tmp_path):
    (tmp_path / "run" / "predictions").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "run" / "predictions" / "c").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ValueError, match="resolves outside the results folder"):
        prediction_path(tmp_path / "run", UnitKey("c", 1, "full", "he2024"))


# -- fingerprints ------------------------------------------------------------------------------
@pytest.fixture()
def own_copy(shared_data, tmp_path) -> Path:
    """STS_002 and STS_019 copied into tmp (so a test may change them) and their manifest."""
    lines = ["image,label,case"]
    for c in ("STS_002", "STS_019"):
        shutil.copytree(shared_data / "ibsi-sts" / c, tmp_path / c)
        lines.append(f"{tmp_path / c / 'CT_image.nii.gz'},{tmp_path / c / 'CT_mask.nii.gz'},{c}")
    (tmp_path / "cases.csv").write_text("\n".join(lines) + "\n")
    return tmp_path / "cases.csv"


def _shrink_label(path: Path) -> None:
    img = nib.load(path)
    data = np.asarray(img.dataobj).copy()
    z = np.nonzero(data.any(axis=(0, 1)))[0]
    data[..., z[: len(z) // 2]] = 0  # half of the tumour's slices erased
    nib.save(nib.Nifti1Image(data, img.affine, img.header), path)


def test_fingerprints_changed_label_file_is_refused_then_recomputed(own_copy, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(manifest_run_args(own_copy, out, "--limit", "1")) == 0
    assert [u["inputs"][1]["path"] for u in read_jsonl(out / "units.jsonl")] == [str(tmp_path / "STS_002" / "CT_mask.nii.gz")]
    _shrink_label(tmp_path / "STS_002" / "CT_mask.nii.gz")
    capsys.readouterr()
    assert main(manifest_run_args(own_copy, out)) == 2
    err = capsys.readouterr().err
    assert f"input files changed since their units were written ({tmp_path / 'STS_002' / 'CT_mask.nii.gz'}: size " in err
    assert "--allow-changed-data" in err and len(err.strip().splitlines()) == 1
    assert main(manifest_run_args(own_copy, out, "--allow-changed-data")) == 0
    assert "1 case(s) with changed inputs are recomputed" in capsys.readouterr().err
    fresh = tmp_path / "fresh"
    assert main(manifest_run_args(own_copy, fresh)) == 0
    assert rows_without_timing(out) == rows_without_timing(fresh)
    assert (out / "prompts.jsonl").read_bytes() == (fresh / "prompts.jsonl").read_bytes()


def test_fingerprints_verify_data_accepts_a_touched_but_equal_file(own_copy, tmp_path):
    out = tmp_path / "run"
    assert main(manifest_run_args(own_copy, out, "--limit", "1", "--verify-data")) == 0
    assert len(read_jsonl(out / "units.jsonl")[0]["inputs"][0]["sha256"]) == 64
    os.utime(tmp_path / "STS_002" / "CT_mask.nii.gz", ns=(1, 1))
    assert main(manifest_run_args(own_copy, out, "--verify-data")) == 0
    assert main(manifest_run_args(own_copy, tmp_path / "run2", "--limit", "1")) == 0
    os.utime(tmp_path / "STS_002" / "CT_mask.nii.gz", ns=(2, 2))
    assert main(manifest_run_args(own_copy, tmp_path / "run2")) == 2  # without content: the mtime decides


# -- memory ------------------------------------------------------------------------------------
def test_memory_label_header_declaring_1024_cubed_is_refused_unread(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    image = tmp_path / "ct.nii"
    nib.save(nib.Nifti1Image(rng.normal(0, 100, (16, 16, 8)).astype(np.float32), np.eye(4)), image)
    header = nib.Nifti1Header()
    header.set_data_shape((1024, 1024, 1024))
    header.set_data_dtype(np.uint8)
    header.set_qform(np.eye(4), 1)
    label = tmp_path / "seg.nii"
    with open(label, "wb") as fh:  # 348-byte header, 4 bytes of extension flag, 1 MB of voxels
        fh.write(header.binaryblock + b"\0" * 4 + b"\1" * (1 << 20))
    assert label.stat().st_size < (1 << 20) + 400
    reads = []
    monkeypatch.setattr("annosim.data.layouts.read_labels_on", lambda *a: reads.append(a))
    out = tmp_path / "run"
    assert main(["run", "--data", f"{image} {label}", "--model", "classical", "--out", str(out), "--quiet"]) == 1
    errors = read_jsonl(out / "errors.jsonl")
    assert [(e["stage"], e["error"]) for e in errors] == [(
        "read", f"{label}: label grid does not match image {image}: its header declares 1024x1024x1024 voxels "
                "vs 16x16x8; not read")]
    assert reads == []


# -- configuration is not code -----------------------------------------------------------------
def test_config_sam2_target_builtins_open_is_refused(tmp_path):
    pytest.importorskip("sam2")
    from annosim.models.sam2_checkpoints import build_video_predictor

    victim = tmp_path / "written-by-config"
    cfg = tmp_path / "evil.yaml"
    cfg.write_text(f"model:\n  _target_: sam2.modeling.sam2_base.SAM2Base\n  image_encoder:\n"
                   f"    _target_: builtins.open\n    file: {victim}\n    mode: w\n")
    with pytest.raises(ConfigError, match=r"^SAM2 config .*evil.yaml: model.image_encoder._target_ is 'builtins.open'; "
                                          r"only sam2.\* classes and torch.nn layers may be instantiated"):
        build_video_predictor(str(cfg))
    assert not victim.exists()


def test_config_official_configs_pass_the_target_check():
    pytest.importorskip("sam2")
    from hydra import compose
    from omegaconf import OmegaConf

    from annosim.models.sam2_checkpoints import VARIANTS, check_config_targets

    for v in VARIANTS.values():
        cfg = compose(config_name=v.config)
        OmegaConf.resolve(cfg)
        check_config_targets(cfg.model, v.config)
    check_config_targets(OmegaConf.create({"act": {"_target_": "torch.nn.GELU"}}), "x")
    with pytest.raises(ConfigError):
        check_config_targets(OmegaConf.create({"a": [{"_target_": "os.system", "command": "x"}]}), "x")
