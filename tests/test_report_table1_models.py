"""Table-1 view with several models side by side (He et al. 2024, Table 1: SAM2 beside VISTA3D
auto / point / auto+point): model labels, the wide display on hand-made summaries, and a report
of real runs on ../shared/data/totalseg-abdomen (classical, a plugin model, random-weight VISTA3D
in modes auto and auto+point) whose columns are checked against each run's rounds.csv."""

from __future__ import annotations

import json
import re
from html import escape as html_escape
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from annosim.cli import main
from annosim.report import stats, table1, tables
from annosim.report.results_io import ROUND_COLUMNS, model_label, read_runs

LABELS = ("kidney_right", "spleen")
PLUGIN = Path(__file__).resolve().parent / "plugin_models.py"


# -- labels and display on hand-made data ----------------------------------------------------------

def test_model_label_mode_and_plugin_path():
    assert model_label({"model": {"name": "vista3d", "args": {"mode": "auto"}}}) == "vista3d (auto)"
    assert model_label({"model": {"name": "vista3d", "args": {"mode": "auto+point", "x": "1"}}}) == \
        "vista3d (auto+point)"
    assert model_label({"model": {"name": "sam2", "args": {}}}) == "sam2"
    assert model_label({"model": {"name": f"{PLUGIN}:ThresholdGrow"}}) == "plugin_models.py:ThresholdGrow"
    assert model_label({"model": {"name": "pkg.mod:Cls"}}) == "pkg.mod:Cls"
    assert model_label({}) == "model"


def _write_run(folder: Path, rows: list[dict], model: dict) -> Path:
    folder.mkdir(parents=True)
    pd.DataFrame(rows, columns=list(ROUND_COLUMNS)).to_csv(folder / "rounds.csv", index=False)
    (folder / "run.json").write_text(json.dumps({"model": model, "data": {"name": "btcv"},
                                                 "protocols": [{"name": "he2024", "variant": "paper"}]}))
    return folder


def _row(case: str, name: str, setting: str, rnd: int, dice: float) -> dict:
    return dict(case=case, label=2, label_name=name, setting=setting, protocol="he2024", round=rnd,
                annotated_slices=rnd, clicks=rnd, dice=dice, nsd=0.5, hd95=1.0, fp_slices=0, gt_slices=9,
                model_seconds=0.1)


def test_modes_of_one_model_become_column_groups(tmp_path):
    ckpt = {"checkpoint": "/w/model.pt"}
    auto = _write_run(tmp_path / "auto", [_row("a", "kidney_right", "full", 1, 0.5),
                                          _row("b", "kidney_right", "full", 1, 0.7)],
                      {"name": "vista3d", "args": {**ckpt, "mode": "auto"}})
    both = _write_run(tmp_path / "both", [_row("a", "kidney_right", "full", 1, 0.6),
                                          _row("a", "kidney_right", "full", 2, 0.8),
                                          _row("a", "kidney_right", "fg-only", 1, 0.9)],
                      {"name": "vista3d", "args": {**ckpt, "mode": "auto+point"}})
    runs = read_runs([auto, both])
    assert [r.rounds["model"].iloc[0] for r in runs] == ["vista3d (auto)", "vista3d (auto+point)"]
    rounds = pd.concat([stats.carry_forward(r.rounds) for r in runs], ignore_index=True)
    summ = stats.summarize(stats.object_table(rounds), stats.StatsConfig(n_boot=100))
    view = table1.table1_view(summ)
    assert view["model"].tolist() == ["vista3d (auto)", "vista3d (auto+point)"]
    # groups in the order given (auto+point first), one row for the structure
    disp = tables.table1_display(view, [("vista3d (auto+point)", "he2024"), ("vista3d (auto)", "he2024")])
    assert len(disp) == 1
    assert list(disp.columns[:7]) == ["Dataset", "Structure", "Paper dataset",
                                      "vista3d (auto+point) n", "vista3d (auto+point) fg-only/full",
                                      "vista3d (auto) n", "vista3d (auto) fg-only/full"]
    r = disp.iloc[0]
    assert (r["Structure"], r["Paper dataset"]) == ("right kidney", "BTCV")
    assert (r["vista3d (auto) n"], r["vista3d (auto) fg-only/full"]) == ("2", "-/0.600")
    assert (r["vista3d (auto+point) n"], r["vista3d (auto+point) fg-only/full"]) == ("1", "0.900/0.800")
    assert (r["VISTA3D auto (paper)"], r["SAM2 fg-only/full (paper)"]) == ("0.943", "0.926/0.897")
    notes = tables.table1_notes(view)
    assert "Protocol of this run's columns: he2024 (paper)." in notes


def test_groups_name_the_protocol_when_several():
    base = dict(dataset="btcv", structure="right kidney", label_name="kidney_right", n=1, run_fg_only=0.5,
                run_full=0.4, paper_dataset="BTCV", **{c: 0.9 for c in table1.PAPER_METHODS})
    view = pd.DataFrame([dict(base, model="m", protocol="he2024", variant="paper"),
                         dict(base, model="m", protocol="ma2024-box", variant="", run_full=0.3)])
    disp = tables.table1_display(view)
    assert "m / he2024 (paper) fg-only/full" in disp.columns and "m / ma2024-box fg-only/full" in disp.columns
    assert disp["m / ma2024-box fg-only/full"].tolist() == ["0.500/0.300"]
    assert not any(n.startswith("Protocol of this run's columns") for n in tables.table1_notes(view))


# -- real runs -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread: small 3D convolutions on a shared 2-core runner are much faster so."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def model_runs(shared_data, tmp_path_factory, one_torch_thread) -> dict[str, Path]:
    """Runs of the same structures by several models, keyed by the label the report gives them."""
    d = shared_data / "totalseg-abdomen"
    root = tmp_path_factory.mktemp("t1models")
    common = ["run", "--data", f"{d / 'ct.nii.gz'} {d / 'seg.nii.gz'}", "--labels", ",".join(LABELS), "--quiet"]
    runs = {"classical": (["--model", "classical"], root / "classical"),
            "plugin_models.py:ThresholdGrow": (["--model", f"{PLUGIN}:ThresholdGrow"], root / "grow")}
    try:
        import torch
        from monai.networks.nets import vista3d132
    except ImportError:  # the VISTA3D columns need MONAI; the others do not
        vista3d132 = None
    if vista3d132 is not None:
        torch.manual_seed(0)
        ckpt = root / "model.pt"
        torch.save(vista3d132(encoder_embed_dim=8).state_dict(), ckpt)
        v3d = ["--model", "vista3d", "--checkpoint", str(ckpt), "--model-arg", "patch_size=32",
               "--model-arg", "target_spacing=none", "--model-arg", "device=cpu"]
        runs["vista3d (auto)"] = (v3d + ["--model-arg", "mode=auto"], root / "v_auto")
        runs["vista3d (auto+point)"] = (v3d + ["--model-arg", "mode=auto+point", "--protocol-arg", "rounds=2"],
                                        root / "v_auto_point")
    for args, out in runs.values():
        assert main(common + args + ["--out", str(out)]) == 0
    return {name: out for name, (_, out) in runs.items()}


@pytest.fixture(scope="module")
def t1_report(model_runs, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("t1report") / "report"
    assert main(["report", *map(str, model_runs.values()), "--out", str(out), "--n-boot", "200", "--no-qc",
                 "--paper-dataset", "BTCV"]) == 0
    return out


def _md_table(path: Path) -> pd.DataFrame:
    lines = [ln for ln in path.read_text().splitlines() if ln.startswith("|")]
    cells = [[c.strip() for c in ln.strip("|").split(" | ")] for ln in lines]
    return pd.DataFrame(cells[2:], columns=cells[0])


def test_table1_has_one_column_group_per_model(model_runs, t1_report):
    names = list(model_runs)
    view = pd.read_csv(t1_report / "table1.csv")
    assert set(view["model"]) == set(names)
    assert len(view) == len(names) * len(LABELS)
    md = _md_table(t1_report / "table1.md")
    assert list(md.columns[3:3 + 2 * len(names)]) == [f"{n} {what}" for n in names for what in ("n", "fg-only/full")]
    assert md["Structure"].tolist() == ["right kidney", "spleen"] and set(md["Paper dataset"]) == {"BTCV"}
    for name, run in model_runs.items():
        rounds = pd.read_csv(run / "rounds.csv")
        best = rounds.groupby(["label_name", "setting"])["dice"].max()
        for label, structure in zip(LABELS, ("right kidney", "spleen")):
            raw = view[(view["model"] == name) & (view["label_name"] == label)].iloc[0]
            assert raw["run_fg_only"] == best[(label, "fg-only")] and raw["run_full"] == best[(label, "full")]
            assert raw["n"] == 1
            cell = md.loc[md["Structure"] == structure, f"{name} fg-only/full"].iloc[0]
            assert cell == f"{best[(label, 'fg-only')]:.3f}/{best[(label, 'full')]:.3f}"
    # the published columns sit beside them (BTCV right kidney, He et al. 2024 Table 1)
    rk = md[md["Structure"] == "right kidney"].iloc[0]
    assert (rk["VISTA3D auto (paper)"], rk["SAM2 fg-only/full (paper)"]) == ("0.943", "0.926/0.897")
    if "vista3d (auto)" in model_runs:  # one prompt-free round; auto+point: 2 rounds of clicks at most
        auto = pd.read_csv(model_runs["vista3d (auto)"] / "rounds.csv")
        assert set(auto["round"]) == {1} and set(auto["clicks"]) == {0}
        assert pd.read_csv(model_runs["vista3d (auto+point)"] / "rounds.csv")["clicks"].min() >= 1


def test_table1_groups_in_html(model_runs, t1_report):
    html = (t1_report / "report.html").read_text()
    section = html.split('id="table1"', 1)[1].split("<h2", 1)[0]
    # two header rows: a group per model (in the order the runs were given), then the published group
    groups = re.findall(r'<th colspan="(\d+)" class="group">([^<]+)</th>', section)
    assert groups == [("2", html_escape(n)) for n in model_runs] + [("7", tables.PAPER_GROUP)]
    assert section.count("<th>fg-only/full</th>") == len(model_runs)
    assert section.count("<tr>") == 2 + len(LABELS)
    tex = (t1_report / "table1.tex").read_text()
    for i, name in enumerate(model_runs):
        assert r"\multicolumn{2}{c}{%s}" % tables.latex_escape(name) in tex
        assert r"\cmidrule(lr){%d-%d}" % (4 + 2 * i, 5 + 2 * i) in tex
    assert 'id="sensitivity"' not in html  # one protocol per model: no sensitivity table
    summary = pd.read_csv(t1_report / "summary.csv")
    assert set(summary["model"]) == set(model_runs)
    assert np.all(summary["n"] == 1)


def test_two_row_header_in_html_and_latex():
    df = pd.DataFrame([["a", "1", "0.5", "b"]], columns=["A", "g n", "g x", "B"])
    header = [("", "A"), ("g", "n"), ("g", "x"), ("", "B")]
    html = tables.to_html(df, header=header)
    assert ('<thead><tr><th rowspan="2">A</th><th colspan="2" class="group">g</th><th rowspan="2">B</th></tr>'
            "<tr><th>n</th><th>x</th></tr></thead>") in html
    tex = tables.to_latex(df, header=header).splitlines()
    i = tex.index(r"\toprule")
    assert tex[i + 1:i + 5] == [r" & \multicolumn{2}{c}{g} &  \\", r"\cmidrule(lr){2-3}", r"A & n & x & B \\",
                                r"\midrule"]
    assert tables.to_html(df) == tables.to_html(df, header=[("", c) for c in df.columns])  # no group: one row


def test_table1_header_groups_models_and_published_columns():
    cols = ["Dataset", "Structure", "Paper dataset", "vista3d (auto) n", "vista3d (auto) fg-only/full",
            "Auto3DSeg (paper)", "SAM2 fg-only/full (paper)"]
    assert tables.table1_header(pd.DataFrame(columns=cols)) == [
        ("", "Dataset"), ("", "Structure"), ("", "Paper dataset"), ("vista3d (auto)", "n"),
        ("vista3d (auto)", "fg-only/full"), (tables.PAPER_GROUP, "Auto3DSeg"),
        (tables.PAPER_GROUP, "SAM2 fg-only/full")]
