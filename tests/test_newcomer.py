"""Issue 16, "a newcomer's first hour": one test per item, each a CLI call with the bad input or
the mistaken command, checking the exit status, that the message is one line naming the problem,
and that no folder was made where none should be; then every subcommand's --help and one error
of each, never with a Python traceback."""

from __future__ import annotations

import csv
import hashlib
import importlib.metadata
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from annosim.cli import main
from results_helpers import PLUGIN, TESTS

REPO = TESTS.parent
INTERRUPT = f"{TESTS / 'plugin_models.py'}:InterruptAfter"


def pair(shared_data: Path, label: str = "seg.nii.gz") -> str:
    d = shared_data / "totalseg-abdomen"
    return f"{d / 'ct.nii.gz'} {d / label}"


def quick_run(shared_data: Path, out: Path, *extra: str, model: str = PLUGIN, labels: str = "spleen") -> list[str]:
    """A one-case, one-round ``annosim run`` of the plugin model (about a second)."""
    return ["run", "--data", pair(shared_data), "--model", model, "--labels", labels, "--protocol-arg", "rounds=1",
            "--out", str(out), "--quiet", *extra]


def error_line(capsys) -> str:
    """The only line on stderr (asserts there is exactly one)."""
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.fixture(scope="module")
def reference(shared_data, tmp_path_factory) -> Path:
    """spleen and aorta, both settings, one round: 4 units."""
    out = tmp_path_factory.mktemp("newcomer") / "run"
    assert main(quick_run(shared_data, out, labels="spleen,aorta")) == 0
    return out


# -- item 1 ------------------------------------------------------------------------------------
def test_item1_csv_manifest_with_absolute_paths_is_accepted(shared_data, tmp_path, capsys):
    """A manifest is the user's file: absolute paths are taken as they are (no --data-root)."""
    sts = shared_data / "ibsi-sts" / "STS_002"
    manifest = tmp_path / "lists" / "cases.csv"
    manifest.parent.mkdir()
    manifest.write_text(f"image,label\n{sts / 'CT_image.nii.gz'},{sts / 'CT_mask.nii.gz'}\n")
    out = tmp_path / "run"
    assert main(["run", "--data", str(manifest), "--model", PLUGIN, "--settings", "fg-only", "--protocol-arg",
                 "rounds=1", "--out", str(out), "--quiet"]) == 0
    with open(out / "rounds.csv", newline="") as fh:
        assert [r["case"] for r in csv.DictReader(fh)] == ["CT_image"]
    # a dataset file that came with a download still may not point outside its root
    datalist = tmp_path / "lists" / "list.json"
    datalist.write_text(json.dumps({"testing": [{"image": "../ct.nii.gz", "label": "seg.nii.gz"}]}))
    capsys.readouterr()
    assert main(["run", "--data", str(datalist), "--out", str(tmp_path / "run2"), "--quiet"]) == 2
    line = error_line(capsys)
    assert str(datalist) in line and "points outside the dataset root" in line and "--data-root" in line
    assert not (tmp_path / "run2").exists()


# -- item 2 ------------------------------------------------------------------------------------
@pytest.mark.parametrize("target", ["/proc/annosim-x", "/dev/null/x"])
def test_item2_out_that_cannot_be_created_is_one_line_before_any_case(tmp_path, capsys, target):
    """--out is checked before the dataset is opened: the data spec here does not even exist."""
    missing = f"{tmp_path / 'no-ct.nii.gz'} {tmp_path / 'no-seg.nii.gz'}"
    assert main(["run", "--data", missing, "--out", target, "--quiet"]) == 2
    line = error_line(capsys)
    assert line.startswith(f"annosim: error: --out {target}:") and "Traceback" not in line
    empty = tmp_path / "empty-run"
    empty.mkdir()
    for args in (["report", str(empty), "--out", target], ["compare", str(empty), str(empty), "--out", target],
                 ["score", "--pred", str(empty), "--data", missing, "--out", target]):
        assert main(args) == 2, args
        assert error_line(capsys).startswith(f"annosim: error: --out {target}:"), args


# -- item 3 ------------------------------------------------------------------------------------
def test_item3_typo_in_labels_is_a_command_error_and_blocks_nothing(shared_data, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(quick_run(shared_data, out, labels="splen")) == 2
    line = error_line(capsys)
    assert "--labels splen: no label of the case has this name; did you mean 'spleen'?" in line
    assert "names present: adrenal_gland_left, adrenal_gland_right, aorta," in line
    assert not out.exists()
    assert main(quick_run(shared_data, out, labels="spleen")) == 0  # the corrected command


def test_item3_missing_file_in_image_label_is_a_command_error(shared_data, tmp_path, capsys):
    out = tmp_path / "run"
    args = quick_run(shared_data, out)
    args[args.index("--data") + 1] = pair(shared_data, "segg.nii.gz")
    assert main(args) == 2
    line = error_line(capsys)
    assert line == f"annosim: error: --data: label file {shared_data / 'totalseg-abdomen' / 'segg.nii.gz'} not found"
    assert not out.exists()


def test_item3_folder_without_finished_unit_never_refuses(shared_data, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(quick_run(shared_data, out, labels="200")) == 1  # a value no voxel has: a data error
    assert (out / "run.json").exists() and not (out / "units.jsonl").exists()
    assert main(quick_run(shared_data, out, labels="spleen")) == 0  # another configuration takes it over


# -- item 4 ------------------------------------------------------------------------------------
def test_item4_refusal_lists_only_the_differing_keys(shared_data, reference, capsys):
    args = quick_run(shared_data, reference, labels="spleen,aorta")
    args[args.index("rounds=1")] = "rounds=2"
    capsys.readouterr()
    assert main(args) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [
        f"annosim: error: {reference}: results folder was made by a different configuration:",
        "  protocols.he2024.max_rounds: 1 -> 2",
        "  protocols.he2024.params.rounds: 1 -> 2",
        "rerun the command that made it to resume, or give a new --out folder",
    ]


# -- item 5 ------------------------------------------------------------------------------------
def test_item5_ctrl_c_says_what_was_saved_and_how_to_resume(shared_data, tmp_path, capsys):
    out = tmp_path / "run"
    args = quick_run(shared_data, out, "--settings", "fg-only", model=INTERRUPT, labels="spleen,aorta")
    assert main(args) == 130  # KeyboardInterrupt in the second unit
    line = error_line(capsys)
    assert line == f"annosim: interrupted: 1 units saved now, 1 in all in {out}; rerun the same command to resume"
    assert main(args) == 0  # the counter is per process: one propagation left, below the trigger
    assert "(1 units written, 1 resumed, 0 errors)" in capsys.readouterr().out
    early = tmp_path / "early"
    assert main([*quick_run(shared_data, early, model=INTERRUPT), "--model-arg", "after=0"]) == 130
    assert error_line(capsys) == ("annosim: interrupted (Ctrl-C); a run keeps the units it saved: rerun the same "
                                  "command to resume")  # while the model loads: before --out is created
    assert not early.exists()


# -- item 6 ------------------------------------------------------------------------------------
def test_item6_versions_come_from_the_installed_distributions(reference):
    versions = json.loads((reference / "run.json").read_text())["versions"]
    for dist in ("numpy", "scipy", "torch", "sam2", "monai", "SimpleITK", "nibabel"):
        try:
            expected = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
        assert versions[dist] == expected, dist
    assert versions["annosim"] == importlib.metadata.version("annosim")


# -- item 7 ------------------------------------------------------------------------------------
def test_item7_one_spelling_one_summary_plain_words(shared_data, reference, tmp_path, capsys):
    pred = tmp_path / "pred"
    pred.mkdir()
    (pred / "ct.nii.gz").symlink_to(shared_data / "totalseg-abdomen" / "seg.nii.gz")  # the truth as prediction
    score = ["score", "--pred", str(pred), "--data", pair(shared_data), "--labels", "spleen", "--out",
             str(tmp_path / "scored")]
    assert main([*score, "--no-surface"]) == 2  # the old spelling is gone
    assert "Error: No such option '--no-surface'. Did you mean '--no-surface-metrics'?" in capsys.readouterr().err
    assert not (tmp_path / "scored").exists()
    assert main([*score, "--no-surface-metrics"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].split() == ["structure", "full", "fg-only", "protocol"]
    assert printed[1].split() == ["spleen", "1.000", "(n=1)", "1.000", "(n=1)", "automatic"]
    assert main(["protocols"]) == 0
    assert "up to 5 clicks in all on its slice" in capsys.readouterr().out
    rep = tmp_path / "rep"
    assert main(["report", str(reference), "--out", str(rep), "--no-qc", "--n-boot", "100"]) == 0
    html = (rep / "report.html").read_text()
    runs = html[html.index('id="runs"'):html.index('id="summary"')]
    assert re.findall(r"<th>([^<]*)</th>", runs)[3] == "Model parameters"
    assert re.findall(r"<td[^>]*>([^<]*)</td>", runs)[3] == "-"  # no {"args": {}}
    assert "not)" not in html
    assert len(re.findall(r">1\.00 \((all reached|1 of 1 never reached)\)<", html)) == 4 * 2  # NoC@80, @90


# -- item 8 ------------------------------------------------------------------------------------
def test_item8_inspect_summarises_missing_files(tmp_path, capsys):
    entries = [{"image": f"img/case{i:02d}.nii.gz", "label": f"lab/case{i:02d}.nii.gz"} for i in range(12)]
    (tmp_path / "list.json").write_text(json.dumps({"testing": entries}))
    assert main(["datasets", "inspect", str(tmp_path / "list.json")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"annosim: 12 of 12 images not found under {tmp_path}"
    assert err[1] == (f"annosim: 12 of 12 labels not found under {tmp_path}; pass --data-root FOLDER if the "
                      "paths are relative to another folder")
    assert err[2:7] == [f"annosim:   not found: {tmp_path / 'img' / f'case{i:02d}.nii.gz'}" for i in range(5)]
    assert err[7:] == ["annosim:   ... and 19 more", "annosim: error: 12 of 12 case(s) could not be read"]


# -- item 9 ------------------------------------------------------------------------------------
@pytest.mark.parametrize("model", ["sam2.1-hiera-tiny", "vista3d", "nninteractive"])
def test_item9_corrupt_checkpoint_says_size_digest_and_what_is_valid(shared_data, tmp_path, capsys, model):
    pytest.importorskip({"sam2.1-hiera-tiny": "sam2", "vista3d": "monai", "nninteractive": "nnInteractive"}[model])
    junk = bytes(range(256)) * 20  # 5120 bytes that are no checkpoint
    if model == "nninteractive":
        ckpt = tmp_path / "nni"
        (ckpt / "fold_0").mkdir(parents=True)
        for name in ("plans.json", "dataset.json"):
            (ckpt / name).write_text("{}")
        bad = ckpt / "fold_0" / "checkpoint_final.pth"
    else:
        ckpt = bad = tmp_path / "model.pt"
    bad.write_bytes(junk)
    out = tmp_path / "run"
    assert main(["run", "--data", pair(shared_data), "--labels", "spleen", "--model", model, "--checkpoint",
                 str(ckpt), "--out", str(out), "--quiet"]) == 2
    line = error_line(capsys)
    digest = hashlib.sha256(junk).hexdigest()
    assert line.startswith(f"annosim: error: {bad}: not a loadable checkpoint (5120 bytes, sha256 {digest}; ")
    assert "; a valid one is " in line and "Weights only load failed" not in line
    assert not out.exists()


# -- item 10 -----------------------------------------------------------------------------------
def test_item10_paper_columns_first_the_rest_folded(reference, tmp_path):
    rep = tmp_path / "rep"
    assert main(["report", str(reference), "--out", str(rep), "--no-qc", "--n-boot", "100"]) == 0
    with open(reference / "rounds.csv", newline="") as fh:
        dice = {(r["label_name"], r["setting"]): float(r["dice"]) for r in csv.DictReader(fh)}
    tex = (rep / "summary.tex").read_text()
    assert r"\begin{tabular}{llrr}" in tex and r"Structure & n & full & fg-only \\" in tex
    for name in ("aorta", "spleen"):  # n = 1: no CI, the cell is the one object's best Dice
        assert f"{name} & 1 & {dice[(name, 'full')]:.3f} & {dice[(name, 'fg-only')]:.3f} \\\\" in tex
    full = (rep / "summary_full.tex").read_text()
    assert "NoC@90" in full and r"\label{tab:summary-full}" in full
    html = (rep / "report.html").read_text()
    summary = html[html.index('id="summary"'):html.index('id="figures"')]
    first_header = re.findall(r"<th>([^<]*)</th>", summary.split("</thead>")[0])
    assert first_header == ["Dataset", "Structure", "Setting", "Model", "Protocol", "n", "Best Dice",
                            "95% CI (1.96 SEM)"]
    folded = summary[summary.index("<details>"):summary.index("</details>")]
    folded_header = re.findall(r"<th>([^<]*)</th>", folded)
    assert folded_header[:5] == ["Dataset", "Structure", "Setting", "Model", "Protocol"]
    assert {"NoC@90", "HD95 mm", "95% CI (bootstrap)"} <= set(folded_header) and "Best Dice" not in folded_header


# -- item 11 -----------------------------------------------------------------------------------
def test_item11_readme_numbers_are_regenerated_by_the_command_shown(shared_data, tmp_path):
    """benchmarks/readme_numbers.py (`make readme-numbers`) knows every row of the README's
    classical table and, run again, prints exactly the README's numbers (about 15 s)."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import readme_numbers
    finally:
        sys.path.pop(0)
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("Measured under `he2024`"):readme.index("### SAM2")]
    assert "`make readme-numbers` (`python benchmarks/readme_numbers.py --check`" in " ".join(section.split())
    table_rows = re.findall(r"^\| (.+?) \| [0-9][^|]* \| [0-9][^|]* \|$", section, flags=re.M)
    names = [r.name for r in readme_numbers.ROWS]
    assert table_rows == names[:-1]  # the last row is the ma2024-box sentence
    assert set(readme_numbers.readme_cells()) == set(names)  # --check finds every quoted number
    make = subprocess.run(["make", "-n", "readme-numbers"], cwd=REPO, capture_output=True, text=True)
    assert make.returncode == 0 and "benchmarks/readme_numbers.py --check" in make.stdout
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    res = subprocess.run([sys.executable, str(REPO / "benchmarks" / "readme_numbers.py"), "--data", str(shared_data),
                          "--check", "--out", str(tmp_path / "runs")], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "| `../shared/data/ibsi-sts` | two soft-tissue sarcomas (mean) |" in res.stdout


# -- item 12 -----------------------------------------------------------------------------------
def test_item12_make_install_is_one_line_a_step_and_logs_pip(tmp_path):
    """Dry run of the install recipe: every pip call appends to .venv/install.log, and each
    step prints one line."""
    dry = subprocess.run(["make", "-n", "-B", "install", f"VENV={tmp_path / 'v'}"], cwd=REPO, capture_output=True,
                         text=True)
    assert dry.returncode == 0, dry.stderr
    lines = dry.stdout.splitlines()
    pips = [ln for ln in lines if " -m pip " in ln]
    assert len(pips) >= 4
    log = f"{tmp_path / 'v'}/install.log"
    assert all(f">> {log} 2>&1" in ln for ln in pips), pips
    assert sum(ln.lstrip().startswith(("echo", "@echo", "printf")) for ln in lines) >= len(pips)


# -- no traceback anywhere ---------------------------------------------------------------------
def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "annosim", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_every_subcommand_help_and_error_without_traceback(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    missing = f"{tmp_path / 'ct.nii.gz'} {tmp_path / 'seg.nii.gz'}"
    calls = {
        (): 2, ("--help",): 0, ("bogus",): 2,
        ("demo", "--help"): 0, ("demo", "--out", "/proc/annosim-demo"): 2,
        ("run", "--help"): 0, ("run", "--data", missing, "--out", str(tmp_path / "r")): 2,
        ("datasets", "--help"): 0, ("datasets", "inspect", "--help"): 0, ("datasets", "inspect", missing): 2,
        ("protocols", "--help"): 0, ("protocols", "--bogus"): 2,
        ("models", "--help"): 0, ("models", "extra"): 2,
        ("report", "--help"): 0, ("report", str(empty), "--out", str(tmp_path / "rep")): 2,
        ("compare", "--help"): 0, ("compare", str(empty), str(empty)): 2,
        ("score", "--help"): 0, ("score", "--pred", str(empty), "--data", missing, "--out", str(tmp_path / "s")): 2,
    }
    for args, status in calls.items():
        res = _cli(*args, cwd=tmp_path)
        assert "Traceback (most recent call last)" not in res.stdout + res.stderr, (args, res.stderr)
        assert res.returncode == status, (args, res.returncode, res.stderr)
        if status:
            assert res.stderr.strip(), args
    assert not (tmp_path / "r").exists() and not (tmp_path / "s").exists()
