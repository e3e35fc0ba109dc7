"""Experiment files and the built-in ``he2024`` recipe on a miniature of the real layouts.

The miniature writes, for each dataset of He et al. 2024, the first two cases of the VISTA test
fold (``annosim/experiments/datalists``, copied from Project-MONAI/VISTA) at the paths the
datalist gives, relative to the usual folder (``Task03_Liver/imagesTr/liver_114.nii.gz``,
``RawData/Training/img/img0021.nii.gz``, ``AbdomenCT-1K-ImagePart2/Case_00697_0000.nii.gz`` and
``Mask/Case_00697.nii.gz``...), 24 x 24 x 12 voxels, with the label values of the real datasets
(BTCV 1..13, AbdomenCT-1K 1..4, MSD Task03 1-2 ...): each value a 5 x 5 px block on slices 2..9.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from annosim.cli import main
from annosim.data.layouts import detect_layout, open_dataset
from annosim.experiments.spec import packaged_datalist, parse_experiment, recipe_text
from annosim.report.table1 import load_paper_table
from results_helpers import PLUGIN

TESTS = Path(__file__).resolve().parent
#: dataset name -> (folder under the data root, datalist, label values present in the real data)
LAYOUT = {
    "MSD03": ("Task03_Liver", "Task03_5_folds.json", (1, 2)),
    "MSD06": ("Task06_Lung", "Task06_5_folds.json", (1,)),
    "MSD07": ("Task07_Pancreas", "Task07_5_folds.json", (1, 2)),
    "MSD08": ("Task08_HepaticVessel", "Task08_5_folds.json", (1, 2)),
    "MSD09": ("Task09_Spleen", "Task09_5_folds.json", (1,)),
    "BTCV": (".", "BTCV-Abdomen_5_folds.json", tuple(range(1, 14))),
    "AbdomenCT-1K": (".", "AbdomenCT-1K_5_folds.json", (1, 2, 3, 4)),
}
#: The structures the recipe evaluates, in the paper's names (Table 1 rows; AbdomenCT-1K without the
#: kidney, which VISTA's label_mappings.json leaves out).
EXPECTED = {
    "MSD03": {"liver", "hepatic tumor"},
    "MSD06": {"lung tumor"},
    "MSD07": {"pancreas", "pancreatic tumor"},
    "MSD08": {"hepatic vessel", "hepatic tumor"},
    "MSD09": {"spleen"},
    "BTCV": {"spleen", "right kidney", "left kidney", "gallbladder", "esophagus", "liver", "stomach", "aorta",
             "inferior vena cava", "portal vein and splenic vein", "pancreas", "right adrenal gland",
             "left adrenal gland"},
    "AbdomenCT-1K": {"liver", "spleen", "pancreas"},
}
CASES = {"MSD03": ["liver_114", "liver_51"], "MSD06": ["lung_018", "lung_078"],
         "MSD07": ["pancreas_207", "pancreas_040"], "MSD08": ["hepaticvessel_230", "hepaticvessel_066"],
         "MSD09": ["spleen_44", "spleen_21"], "BTCV": ["img0021", "img0034"],
         "AbdomenCT-1K": ["Case_00697_0000", "Case_00030_0000"]}


def _volume(values: tuple[int, ...], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(image HU, label) as stored, (X, Y, Z) = 24 x 24 x 12: value k a 5 x 5 block on slices 2..9."""
    rng = np.random.default_rng(seed)
    img = np.full((24, 24, 12), -50.0, np.float32) + rng.normal(0, 3, (24, 24, 12)).astype(np.float32)
    lab = np.zeros((24, 24, 12), np.uint8)
    for i, v in enumerate(values):
        y, x = 1 + 6 * (i // 4), 1 + 6 * (i % 4)
        lab[y:y + 5, x:x + 5, 2:10] = v
        img[y:y + 5, x:x + 5, 2:10] = 120.0 + 40.0 * (i % 5)
    return img, lab


def write_miniature(root: Path, datasets=tuple(LAYOUT), cases: int = 2) -> None:
    """The first ``cases`` test-fold cases of each dataset at their real paths under ``root``."""
    affine = np.diag([0.8, 0.8, 2.5, 1.0])
    for name in datasets:
        folder, datalist, values = LAYOUT[name]
        entries = json.loads(packaged_datalist(datalist).read_text())["testing"][:cases]
        for k, e in enumerate(entries):
            img, lab = _volume(values, k)
            for rel, arr in ((e["image"], img), (e["label"], lab)):
                path = root / folder / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                nib.save(nib.Nifti1Image(arr, affine), path)


def _run(args: list[str], capsys) -> tuple[int, str, str]:
    rc = main(args)
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


@pytest.fixture(scope="module")
def miniature(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mini")
    write_miniature(root)
    return root


@pytest.fixture(scope="module")
def reproduced(miniature, tmp_path_factory) -> tuple[int, Path]:
    out = tmp_path_factory.mktemp("he") / "out"
    rc = main(["reproduce", "he2024", "--data-root", str(miniature), "--out", str(out), "--model", "classical",
               "--no-qc", "--quiet"])
    return rc, out


def test_reproduce_he2024_on_the_miniature(reproduced):
    rc, out = reproduced
    assert rc == 0
    for name, expected in EXPECTED.items():
        rounds = pd.read_csv(out / "runs" / f"{name}__classical__he2024" / "rounds.csv")
        assert set(rounds["label_name"]) == expected, name
        assert sorted(set(rounds["case"].astype(str))) == sorted(CASES[name]), name
        assert set(rounds["setting"]) == {"full", "fg-only"}
        assert rounds["round"].max() <= 8  # he2024: 8 passes at most
    paper = load_paper_table().set_index(["dataset", "structure"])
    for agg in ("per-object", "reference"):
        rep = out / "report" / agg
        assert (rep / "report.html").is_file()
        for fig in ("fig2", "fig3", "fig4"):  # the paper's groups (Fig. 2 MSD tasks, 3 Task09 + AbdomenCT-1K, 4 BTCV)
            assert (rep / "figures" / f"{fig}_round_classical_he2024.png").is_file(), (agg, fig)
        t1 = pd.read_csv(rep / "table1.csv")
        assert set(t1["aggregation"]) == {agg}
        got = {(d, s) for d, s in zip(t1["dataset"], t1["structure"])}
        assert got == {(d, s) for d, names in EXPECTED.items() for s in names}
        # the published columns beside each row are He et al.'s Table 1 (he2024_table1.csv)
        for _, r in t1.iterrows():
            assert r["paper_dataset"] == r["dataset"]
            for col in ("nnunet", "auto3dseg", "sam2_fg_only", "sam2_full"):
                assert r[col] == pytest.approx(paper.loc[(r["dataset"], r["structure"]), col], nan_ok=True)
    btcv = pd.read_csv(out / "report" / "per-object" / "table1.csv").set_index(["dataset", "structure"])
    assert btcv.loc[("BTCV", "spleen"), "sam2_fg_only"] == 0.475  # Table 1, BTCV spleen, SAM2 fg-only
    curves = pd.read_csv(out / "report" / "per-object" / "curves.csv")
    assert set(curves["dataset"]) == set(EXPECTED)
    # run.json names the tree's copy of the shipped datalist (stable when annosim moves)
    meta = json.loads((out / "runs" / "MSD03__classical__he2024" / "run.json").read_text())
    assert meta["data"]["spec"] == str(out / "datalists" / "Task03_5_folds.json")
    copy = out / "datalists" / "Task03_5_folds.json"
    assert copy.read_bytes() == packaged_datalist("Task03_5_folds.json").read_bytes()


def test_nothing_found_exits_1_and_makes_no_folder(tmp_path, capsys):
    out = tmp_path / "out"
    rc, stdout, err = _run(["reproduce", "he2024", "--data-root", str(tmp_path), "--out", str(out), "--model",
                            "classical", "--quiet"], capsys)
    assert rc == 1
    assert stdout.count("missing: ") == 7 and "no dataset of the experiment was found" in err
    assert not out.exists()


def test_removed_dataset_is_reported_and_the_rest_runs(tmp_path, capsys):
    root = tmp_path / "data"
    write_miniature(root, ("MSD06", "MSD09"))
    out = tmp_path / "out"
    rc, stdout, err = _run(["reproduce", "he2024", "--data-root", str(root), "--out", str(out), "--model", "classical",
                            "--datasets", "MSD06,MSD09,BTCV", "--no-qc", "--quiet"], capsys)
    assert rc == 0
    assert f"BTCV: not found (looked for a folder holding RawData/Training: {root}," in stdout
    assert "synapse.org" in stdout
    assert sorted(p.name for p in (out / "runs").iterdir()) == ["MSD06__classical__he2024", "MSD09__classical__he2024"]
    t1 = pd.read_csv(out / "report" / "per-object" / "table1.csv")
    assert set(t1["dataset"]) == {"MSD06", "MSD09"}


def test_missing_cases_of_a_found_dataset_are_skipped(tmp_path, capsys):
    root = tmp_path / "data"
    write_miniature(root, ("MSD09",), cases=2)
    (root / "Task09_Spleen" / "labelsTr" / "spleen_21.nii.gz").unlink()
    out = tmp_path / "out"
    rc, _, err = _run(["reproduce", "he2024", "--data-root", str(root), "--out", str(out), "--model", "classical",
                       "--datasets", "MSD09", "--no-qc", "--quiet"], capsys)
    assert rc == 0
    assert "7 of 8 cases skipped: their files are missing" in err  # the split has 8 test cases
    rounds = pd.read_csv(out / "runs" / "MSD09__classical__he2024" / "rounds.csv")
    assert set(rounds["case"]) == {"spleen_44"}


def test_plan_lists_cases_structures_and_units(miniature, capsys):
    rc, stdout, _ = _run(["experiment", "plan", "he2024", "--data-root", str(miniature), "--model", "classical"],
                         capsys)
    assert rc == 0
    assert "dataset BTCV: found at" in stdout
    assert "split testing: 2 of 6 cases present, 4 missing" in stdout  # BTCV's test fold has 6 cases
    assert "cases: img0021, img0034" in stdout
    assert "units: 52 (2 cases x 13 structures x 2 settings x 1 models x 1 protocols" in stdout
    assert "structures: 1=liver, 3=spleen, 4=pancreas" in stdout  # AbdomenCT-1K, no kidney
    assert "units: 12 (2 cases x 3 structures" in stdout
    assert "model classical: no weights" in stdout
    assert "total: 96 units in 7 results folders; 0 dataset(s) missing" in stdout  # 2 cases x 24 structures x 2
    assert "memory for case" in stdout


def test_plan_on_an_empty_folder_says_what_is_missing_and_where_published(tmp_path, capsys):
    rc, stdout, _ = _run(["experiment", "plan", "he2024", "--data-root", str(tmp_path), "--model", "classical"],
                         capsys)
    assert rc == 0
    assert f"dataset MSD03: not found (looked for a folder holding imagesTr: {tmp_path / 'Task03_Liver'}, {tmp_path / 'Task03'}); " \
           "published at http://medicaldecathlon.com/" in stdout
    assert "AbdomenCT-1K: not found" in stdout and "github.com/JunMa11/AbdomenCT-1K" in stdout
    assert "7 dataset(s) missing" in stdout


MINIMAL = """
[[datasets]]
name = "spleen"
spec = "annosim:Task09_5_folds.json"
folders = ["Task09_Spleen"]

[[models]]
name = "classical"

[[protocols]]
name = "he2024"
"""


@pytest.mark.parametrize("edit, key, problem", [
    (lambda t: t.replace('name = "classical"', 'name = "classical"\ncolour = "red"'), "models[1].colour",
     "unknown key"),
    (lambda t: t.replace('name = "classical"', 'name = "no-such-model"'), "models[1].name", "no-such-model"),
    (lambda t: t.replace('spec = "annosim:Task09_5_folds.json"\n', ""), "datasets[1].spec", "missing (required)"),
    (lambda t: t.replace('name = "he2024"', 'name = "he2025"'), "protocols[1]", "he2025"),
    (lambda t: "sede = 1\n" + t, "sede", "unknown key"),
    (lambda t: t + '[[report.figures]]\nname = "f"\ndatasets = ["liver"]\n', "report.figures[1].datasets",
     "'liver' is not a dataset of this file"),
    (lambda t: 'seed = "zero"\n' + t, "seed", "expected int, got str 'zero'"),
])
def test_malformed_file_is_one_line_exit_2_before_anything_runs(tmp_path, capsys, edit, key, problem):
    path = tmp_path / "exp.toml"
    path.write_text(edit(MINIMAL))
    out = tmp_path / "out"
    rc, _, err = _run(["experiment", "run", str(path), "--data-root", str(tmp_path), "--out", str(out)], capsys)
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"annosim: error: {path}: {key}: ")
    assert problem in lines[0]
    assert not out.exists()


def test_recipes_parse_and_follow_vista_label_mappings():
    he = parse_experiment(recipe_text("he2024"), "he2024")
    assert [m.name for m in he.models] == ["sam2-hiera-large"]  # the reference script's model
    assert [d.name for d in he.datasets] == list(LAYOUT)
    # AbdomenCT-1K: label_mappings.json maps source values 1, 3, 4 only (names from label_dict)
    mapping = json.loads(packaged_datalist("label_mappings.json").read_text())["AbdomenCT-1K"]
    names = json.loads(packaged_datalist("AbdomenCT-1K_5_folds.json").read_text())["label_dict"]
    abd = next(d for d in he.datasets if d.name == "AbdomenCT-1K")
    assert abd.labels == tuple(names[str(src)] for src, _ in mapping)
    cv = parse_experiment(recipe_text("cvpr25"), "cvpr25")
    assert [p.name for p in cv.protocols] == ["cvpr25"]


def test_interrupted_experiment_resumes_every_folder(tmp_path, capsys):
    root = tmp_path / "data"
    write_miniature(root, ("MSD06", "MSD09"))
    out = tmp_path / "out"
    args = ["reproduce", "he2024", "--data-root", str(root), "--out", str(out), "--model", PLUGIN,
            "--datasets", "MSD06,MSD09", "--no-qc", "--quiet"]
    first = out / "runs" / "MSD06__plugin_models.py-ThresholdGrow__he2024" / "units.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "annosim", *args, "--model-arg", "delay=0.05"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONPATH": str(TESTS.parent)})
    deadline = time.time() + 120
    while not (first.exists() and first.read_bytes().count(b"\n") >= 1):
        assert time.time() < deadline and proc.poll() is None, "the run ended before a unit was written"
        time.sleep(0.005)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(60) == 130
    before = {p: p.read_bytes() for p in (out / "runs").glob("*/units.jsonl")}
    assert before and not (out / "report").exists()
    rc, stdout, _ = _run([*args, "--model-arg", "delay=0.05"], capsys)
    assert rc == 0
    for path, journal in before.items():  # every committed unit kept as it was, none recomputed
        assert path.read_bytes().startswith(journal)
    n = before[first].count(b"\n")
    assert f"({4 - n} units written, {n} resumed, 0 errors)" in stdout  # the interrupted folder
    for folder in (out / "runs").iterdir():
        keys = [json.dumps({k: v for k, v in json.loads(line).items() if k in ("case", "label", "setting", "protocol")},
                           sort_keys=True) for line in (folder / "units.jsonl").read_text().splitlines()]
        assert len(keys) == len(set(keys)) == 2 * 1 * 2  # 2 cases x 1 structure x 2 settings, each once
    assert (out / "report" / "per-object" / "report.html").is_file()


def test_changed_configuration_is_refused_before_any_unit_runs(tmp_path, capsys):
    """As ``annosim run`` refuses a folder made by another configuration, before anything runs:
    MSD06's folder, removed, is not made again when MSD09's folder refuses."""
    import shutil

    root = tmp_path / "data"
    write_miniature(root, ("MSD06", "MSD09"), cases=1)
    out = tmp_path / "out"
    args = ["reproduce", "he2024", "--data-root", str(root), "--out", str(out), "--model", "classical",
            "--datasets", "MSD06,MSD09", "--no-qc", "--quiet"]
    assert _run(args, capsys)[0] == 0
    msd06, msd09 = out / "runs" / "MSD06__classical__he2024", out / "runs" / "MSD09__classical__he2024"
    shutil.rmtree(msd06)
    journal = (msd09 / "units.jsonl").read_bytes()
    rc, _, err = _run([*args, "--model-arg", "smooth_mm=2.0"], capsys)
    assert rc == 2
    assert f"{msd09}: results folder was made by a different configuration" in err
    assert "model.args" in err and "smooth_mm" in err
    assert not msd06.exists()
    assert (msd09 / "units.jsonl").read_bytes() == journal


def test_readme_example_experiment_file_parses():
    """The commented example in README's "Experiment files" is a valid experiment file."""
    text = (TESTS.parent / "README.md").read_text()
    block = text.split("### Experiment files", 1)[1].split("```toml\n", 1)[1].split("```", 1)[0]
    exp = parse_experiment(block, "README.md")
    assert [d.name for d in exp.datasets] == ["MSD09"] and exp.datasets[0].labels == ("spleen",)
    assert exp.models[0].args == {"cache_dtype": "bfloat16"} and exp.protocols[0].params == {"rounds": "8"}
    assert [f.datasets for f in exp.report.figures] == [("MSD09",)]


def test_cvpr25_recipe_over_an_msd_folder(tmp_path, capsys):
    """The second recipe: the CVPR 2025 protocol (box + 5 click rounds = 6 rounds, never an early
    stop) over an MSD task folder given as --data-root; every training case of dataset.json."""
    write_miniature(tmp_path / "data", ("MSD09",))
    task = tmp_path / "data" / "Task09_Spleen"
    cases = ["spleen_44", "spleen_21"]
    (task / "dataset.json").write_text(json.dumps({
        "name": "Spleen", "labels": {"0": "background", "1": "spleen"},
        "training": [{"image": f"./imagesTr/{c}.nii.gz", "label": f"./labelsTr/{c}.nii.gz"} for c in cases]}))
    out = tmp_path / "out"
    rc, stdout, _ = _run(["reproduce", "cvpr25", "--data-root", str(task), "--out", str(out), "--no-qc", "--quiet"],
                         capsys)
    assert rc == 0
    rounds = pd.read_csv(out / "runs" / "msd__classical__cvpr25" / "rounds.csv")
    assert sorted(set(rounds["case"])) == sorted(cases) and set(rounds["setting"]) == {"full"}
    assert rounds.groupby(["case", "label"])["round"].max().tolist() == [6, 6]
    assert (out / "report" / "figures" / "cvpr25_round_classical_cvpr25.png").is_file()


def test_plan_probe_times_the_first_case(miniature, capsys):
    rc, stdout, _ = _run(["experiment", "plan", "he2024", "--data-root", str(miniature), "--model", "classical",
                          "--datasets", "MSD09", "--probe"], capsys)
    assert rc == 0
    assert "classical: probe " in stdout and "s an object (case spleen_44, one setting" in stdout


def test_btcv_and_abdomenct1k_folders_open_without_a_datalist(miniature):
    """The ``btcv`` and ``abdomenct1k`` layouts: the same cases, ids and label names as the VISTA
    datalists give for the same files (so runs of either pair by case and structure)."""
    training = miniature / "RawData" / "Training"
    assert detect_layout(training) == "btcv" and detect_layout(miniature) == "btcv"  # RawData/Training below
    btcv = open_dataset(training)
    assert [c.case_id for c in btcv] == ["img0021", "img0034"]
    assert [Path(c.labels[0]).name for c in btcv] == ["label0021.nii.gz", "label0034.nii.gz"]
    names = json.loads(packaged_datalist("BTCV-Abdomen_5_folds.json").read_text())["label_dict"]
    assert btcv.cases[0].label_names == {int(k): v for k, v in names.items()}
    abd = open_dataset(miniature, layout="abdomenct1k")
    assert [c.case_id for c in abd] == ["Case_00030_0000", "Case_00697_0000"]  # sorted by mask name
    assert [Path(c.image).parent.name for c in abd] == ["AbdomenCT-1K-ImagePart1", "AbdomenCT-1K-ImagePart2"]
    names = json.loads(packaged_datalist("AbdomenCT-1K_5_folds.json").read_text())["label_dict"]
    assert abd.cases[0].label_names == {int(k): v for k, v in names.items()}
    listed = open_dataset(packaged_datalist("AbdomenCT-1K_5_folds.json"), data_root=miniature)
    present = {c.case_id: c.image for c in listed if Path(c.image).exists()}
    assert present == {c.case_id: c.image for c in abd}


def test_datalist_stems_name_the_paper_datasets():
    """``annosim report`` on a folder of the tree outside the experiment names its dataset after the
    datalist's stem; the Table-1 view maps each stem to its published rows."""
    from annosim.report.table1 import paper_dataset

    assert [paper_dataset(Path(LAYOUT[n][1]).stem) for n in LAYOUT] == list(LAYOUT)
    assert paper_dataset("BTCV-Cervix_5_folds") is None
