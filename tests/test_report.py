"""``annosim report`` end to end on a real run: the classical model on ../shared/data/
totalseg-abdomen (4 structures, both settings, predictions saved), then every table, the
figures, the QC images and the HTML page, which is also rendered by headless Chromium."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from annosim.cli import main
from browser import chromium_command

LABELS = ("kidney_right", "inferior_vena_cava", "portal_vein_and_splenic_vein", "adrenal_gland_right")
PAPER_NAMES = {"right kidney", "inferior vena cava", "portal vein and splenic vein", "right adrenal gland"}


@pytest.fixture(scope="session")
def real_run(shared_data, tmp_path_factory) -> Path:
    d = shared_data / "totalseg-abdomen"
    out = tmp_path_factory.mktemp("report_run") / "run"
    rc = main(["run", "--data", f"{d / 'ct.nii.gz'} {d / 'seg.nii.gz'}", "--model", "classical",
               "--labels", ",".join(LABELS), "--save-predictions", "--out", str(out), "--quiet"])
    assert rc == 0
    return out


@pytest.fixture(scope="session")
def report_dir(real_run, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report_out") / "report"
    assert main(["report", str(real_run), "--out", str(out), "--dataset-name", "totalseg-abdomen",
                 "--n-boot", "2000"]) == 0
    return out


def _best_of_rounds(run: Path) -> pd.DataFrame:
    r = pd.read_csv(run / "rounds.csv")
    return r.groupby(["label_name", "setting"]).agg(best=("dice", "max"), rounds=("round", "max")).reset_index()


def _not_blank(img: Image.Image) -> None:
    a = np.asarray(img.convert("RGB")).astype(np.int16)
    non_white = np.any(a < 235, axis=2).mean()
    assert non_white > 0.03, f"only {non_white:.1%} of the pixels are not white"
    assert a.std() > 20
    assert len(np.unique(a.reshape(-1, 3), axis=0)) > 50  # lines, bands, text in several colours


def test_summary_tables(real_run, report_dir):
    for stem in ("summary", "table1"):
        for ext in ("csv", "md", "tex"):
            assert (report_dir / f"{stem}.{ext}").stat().st_size > 200
    summary = pd.read_csv(report_dir / "summary.csv")
    assert len(summary) == 8  # 4 structures x 2 settings, one case
    assert set(summary["dataset"]) == {"totalseg-abdomen"} and set(summary["n"]) == {1}
    direct = _best_of_rounds(real_run)
    merged = summary.merge(direct, left_on=["structure", "setting"], right_on=["label_name", "setting"])
    assert len(merged) == 8
    np.testing.assert_array_equal(merged["best_dice"].to_numpy(), merged["best"].to_numpy())
    assert summary["early_stopped"].tolist() == (merged["rounds"] < 8).astype(int).tolist()
    md = (report_dir / "summary.md").read_text()
    n_carried = int((direct["rounds"] < 8).sum())
    assert f"carried forward (last round repeated up to the last round): {n_carried} of 8 objects" in md
    assert "he2024 (paper)" in md  # protocol variant beside every number
    tex = (report_dir / "summary_full.tex").read_text()
    assert r"\begin{tabular}" in tex and tex.count(r" \\") == 9  # header + 8 rows
    paper = (report_dir / "summary.tex").read_text()  # structure x setting (issue 16, item 10)
    assert paper.count(r" \\") == 2 + 4 and r"\begin{tabular}{llrr}" in paper  # two header rows + 4 structures
    objects = pd.read_csv(report_dir / "objects.csv")
    assert len(objects) == 8 and set(objects["max_rounds"]) == {8}


def test_table1_view(report_dir):
    t1 = pd.read_csv(report_dir / "table1.csv")
    assert PAPER_NAMES == set(t1["structure"])
    assert set(t1["paper_dataset"]) == {"BTCV"}  # all four are BTCV structures only
    summary = pd.read_csv(report_dir / "summary.csv")
    rk = t1[t1["structure"] == "right kidney"].iloc[0]
    fg = summary[(summary["structure"] == "kidney_right") & (summary["setting"] == "fg-only")]["best_dice"].iloc[0]
    assert rk["run_fg_only"] == fg and (rk["sam2_fg_only"], rk["sam2_full"]) == (0.926, 0.897)
    md = (report_dir / "table1.md").read_text()
    assert "| totalseg-abdomen | right adrenal gland |" in md and "0.282/0.186" in md


def test_figures(report_dir):
    pngs = sorted((report_dir / "figures").glob("*.png"))
    assert [p.name for p in pngs] == ["dice_vs_round_totalseg-abdomen_classical_he2024.png"]
    img = Image.open(pngs[0])
    assert img.format == "PNG" and img.size[0] >= 1200 and 480 <= img.size[1] <= 700
    _not_blank(img)
    svg = pngs[0].with_suffix(".svg")
    root = ET.parse(svg).getroot()
    assert root.tag.endswith("svg")
    assert len(root.findall(".//{http://www.w3.org/2000/svg}path")) > 40
    curves = pd.read_csv(report_dir / "curves.csv")
    assert len(curves) == 4 * 2 * 8  # structure x setting x rounds 1..8 (carried forward)
    assert set(curves["round"]) == set(range(1, 9))


def test_qc_images_show_predictions(report_dir):
    qc = sorted((report_dir / "qc").rglob("*.png"))
    assert len(qc) == 8  # one object per structure and setting
    assert all("only-object" in p.name for p in qc)
    img = Image.open(qc[0])
    assert img.size[1] > 150
    _not_blank(img)
    html = (report_dir / "report.html").read_text()
    assert "predictions were not saved" not in html


def test_html_references_exist(report_dir):
    html = (report_dir / "report.html").read_text()
    refs = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert len(refs) >= 10
    n_images = 0
    for ref in refs:
        if ref.startswith("data:"):
            head, data = ref.split(",", 1)
            assert head == "data:image/png;base64"
            png = base64.b64decode(data)
            assert png[:8] == b"\x89PNG\r\n\x1a\n"
            Image.open(io.BytesIO(png)).verify()
            n_images += 1
        else:
            assert not re.match(r"^[a-z]+://", ref) and not ref.startswith("/"), ref
            assert (report_dir / ref).is_file(), ref
    assert n_images == 1 + 8  # figure + QC images
    for heading in ("Summary", "Mean Dice per round", "Table-1 view", "QC images"):
        assert heading in html


def test_html_renders_in_chromium(report_dir, chromium, tmp_path):
    shot = tmp_path / "shot.png"
    cmd = chromium_command(chromium, tmp_path / "profile", f"--screenshot={shot}", "--window-size=1280,2000",
                           (report_dir / "report.html").resolve().as_uri())
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    img = Image.open(shot)
    assert img.format == "PNG" and img.size == (1280, 2000)
    _not_blank(img)
    shutil.copy(shot, report_dir / "chromium-screenshot.png")  # for a person to look at


def test_report_without_predictions_or_dataset(real_run, tmp_path):
    bare = tmp_path / "bare"
    shutil.copytree(real_run, bare, ignore=shutil.ignore_patterns("predictions", ".annosim.lock"))
    out = tmp_path / "rep"
    assert main(["report", str(bare), "--out", str(out), "--n-boot", "200", "--qc-labels", "kidney_right"]) == 0
    html = (out / "report.html").read_text()
    assert "predictions were not saved" in html
    assert len(list((out / "qc").rglob("*.png"))) == 2  # kidney_right only, both settings
    assert pd.read_csv(out / "summary.csv")["dataset"].iloc[0] == "ct"  # run.json's name without the option
    meta = json.loads((bare / "run.json").read_text())
    meta["data"].update(spec=str(tmp_path / "moved" / "datalist.json"), layout="datalist", root=str(tmp_path))
    (bare / "run.json").write_text(json.dumps(meta))
    assert main(["report", str(bare), "--out", str(out), "--n-boot", "200"]) == 0
    html = (out / "report.html").read_text()
    assert "no QC images - the dataset named in run.json cannot be opened here" in html
    assert "predictions were not saved" not in html  # nothing drawn, nothing to explain
    assert not list((out / "qc").rglob("*.png"))  # stale images of the first report removed
    assert main(["report", str(bare), "--out", str(out), "--no-qc"]) == 0
    assert "QC images were not requested" in (out / "report.html").read_text()


def test_report_bad_folder_is_one_line_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no run.json: not an annosim results folder" in err
