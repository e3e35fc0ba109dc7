"""``annosim view``: a self-contained HTML replay of what the simulated annotator did.

One file per object (one case, structure and protocol), with one pane per run and setting asked
(e.g. two models, or ``full`` beside ``fg-only``) sharing one slice slider and one round
selector. The page has no external script, font, image or request: the CT slices, masks and
prompts are embedded (:mod:`annosim.report.viewer_data`) and drawn by the inline
``viewer.js``. It needs the run's predictions (``annosim run --save-predictions``) and its
dataset readable from here, as QC images do.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from annosim.errors import ConfigError, InputError
from annosim.report import qc
from annosim.report.figures import slug
from annosim.report.results_io import RunResults, load_predictions, read_run
from annosim.report.viewer_data import CT_QUALITY, WIDE_RANGE, WINDOWS, PaneSource, pane_json

#: Colours of the page, matching the QC images.
COLORS = {"truth": qc.TRUTH_COLOR, "prediction": qc.PRED_COLOR, "positive": qc.POS_COLOR,
          "negative": qc.NEG_COLOR, "box": qc.BOX_COLOR, "missed": "#ff9900", "outside": "#444444",
          "empty": "#202020"}
#: Object columns of rounds.csv that name one object of one run.
OBJECT_KEY = ("case", "label", "setting", "protocol")


@dataclass(frozen=True)
class Selection:
    """Which objects to show: ``None`` = any. ``settings`` with two entries puts both settings
    of one object side by side."""

    case: str | None = None
    structure: str | None = None
    settings: tuple[str, ...] = ()
    protocol: str | None = None


def _objects(run: RunResults, sel: Selection) -> pd.DataFrame:
    """The run's objects (one row per case, label, label_name, setting, protocol) matching ``sel``."""
    r = run.rounds
    cols = list(OBJECT_KEY) + ["label_name"]
    objs = r[cols].drop_duplicates().sort_values(cols, kind="mergesort")
    if sel.case is not None:
        objs = objs[objs["case"].astype(str) == str(sel.case)]
    if sel.structure is not None:
        objs = objs[(objs["label_name"].astype(str) == sel.structure) | (objs["label"].astype(str) == sel.structure)]
    if sel.settings:
        objs = objs[objs["setting"].isin(sel.settings)]
    if sel.protocol is not None:
        objs = objs[objs["protocol"] == sel.protocol]
    return objs.reset_index(drop=True)


def plan_views(runs: list[RunResults], sel: Selection) -> list[list[tuple[RunResults, pd.Series]]]:
    """The viewer pages to write: each a list of panes ``(run, object row)``.

    One run: a page per object, or, with two ``settings``, a page per (case, label, protocol)
    with a pane per setting. Several runs: a page per object of the first run with a pane per run
    (the same case, label, setting and protocol must be in each). Raises :class:`ConfigError`
    when nothing matches or a run lacks an object of the first.
    """
    first = _objects(runs[0], sel)
    if first.empty:
        raise ConfigError(f"{runs[0].path}: no object matches the selection ({_describe(sel)})")
    pages: list[list[tuple[RunResults, pd.Series]]] = []
    if len(runs) == 1 and len(sel.settings) > 1:
        for _, grp in first.groupby(["case", "label", "protocol"], sort=True):
            by_setting = {str(row["setting"]): row for _, row in grp.iterrows()}
            pages.append([(runs[0], by_setting[s]) for s in sel.settings if s in by_setting])
        return pages
    others = [_objects(run, sel) for run in runs[1:]]
    for _, row in first.iterrows():
        page = [(runs[0], row)]
        for run, objs in zip(runs[1:], others):
            hit = objs[(objs["case"].astype(str) == str(row["case"])) & (objs["label"] == row["label"])
                       & (objs["setting"] == row["setting"]) & (objs["protocol"] == row["protocol"])]
            if hit.empty:
                raise ConfigError(f"{run.path}: has no object {row['label_name']} of case {row['case']} "
                                  f"({row['setting']}, {row['protocol']}) to set beside {runs[0].path.name}")
            page.append((run, hit.iloc[0]))
        pages.append(page)
    return pages


def _describe(sel: Selection) -> str:
    parts = [f"{k}={v}" for k, v in (("case", sel.case), ("structure", sel.structure), ("protocol", sel.protocol))
             if v is not None]
    if sel.settings:
        parts.append("setting=" + ",".join(sel.settings))
    return ", ".join(parts) or "all objects"


def pane_source(run: RunResults, row: pd.Series, case_obj: Any) -> PaneSource:
    """The pane of one object of ``run`` whose case is loaded as ``case_obj`` (an
    :class:`annosim.data.case.Case` in the run's orientation)."""
    from annosim.engine.unit import setting_frames

    case, label, setting, proto = str(row["case"]), int(row["label"]), str(row["setting"]), str(row["protocol"])
    rr = run.rounds[(run.rounds["case"].astype(str) == case) & (run.rounds["label"] == label)
                    & (run.rounds["setting"] == setting) & (run.rounds["protocol"] == proto)]
    saved = load_predictions(run.path, case, label, setting, proto)
    if not saved:
        raise InputError(run.path, f"predictions of {row['label_name']} in case {case} were not saved "
                                   "(rerun with annosim run --save-predictions)")
    prompts = [p for p in run.prompts() if str(p.get("case")) == case and int(p.get("label", -1)) == label
               and p.get("setting") == setting and p.get("protocol", proto) == proto]
    truth = case_obj.label == label
    title = f"{row['label_name']} - case {case} - {proto}"
    obj = qc.QCObject(title, case_obj.image, truth, rr, prompts, {int(k): v for k, v in saved.items()},
                      protocol=proto, geometry=case_obj.geometry)
    metrics = tuple(m.column for m in run.metrics if m.column in rr.columns)
    heading = f"{run.path.name}: {run.model} - {setting}"
    return PaneSource(obj, setting_frames(truth, setting), metrics, heading, run.max_rounds(proto))


def page_html(panes: list[dict[str, Any]], title: str) -> str:
    """The viewer page: ``panes`` from :func:`annosim.report.viewer_data.pane_json`."""
    shapes = {tuple(p["shape"]) for p in panes}
    if len(shapes) != 1:
        raise ConfigError(f"the panes of one viewer must share a grid; got {sorted(shapes)}")
    data = {"panes": panes, "colors": COLORS, "windows": WINDOWS, "wide_range": list(WIDE_RANGE)}
    payload = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    script = resources.files("annosim.report").joinpath("viewer.js").read_text(encoding="utf-8")
    keys = (("truth", "truth"), ("prediction", "prediction"), ("positive", "positive click"),
            ("negative", "negative click"), ("box", "box"))
    strip = (("prediction", "over-tracked (prediction only)"), ("missed", "missed (truth only)"),
             ("outside", "outside the setting's frames"))
    legend = " ".join(f'<span style="background:{COLORS[k]}"></span>{text}' for k, text in keys) + \
        " - strip under the slice: Dice per slice (red 0 to green 1), " + \
        " ".join(f'<span style="background:{COLORS[k]}"></span>{text}' for k, text in strip)
    options = "".join(f'<option value="{k}">{k} (L {v[0]:g}, W {v[1]:g})</option>' for k, v in WINDOWS.items())
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<title>{html.escape(title)}</title>
<style>
body {{ font-family: sans-serif; background: #111; color: #ddd; margin: 12px; }}
#controls {{ display: flex; flex-wrap: wrap; gap: 14px; align-items: center; margin-bottom: 10px; }}
#slice {{ width: 420px; }}
#panes {{ display: flex; flex-wrap: wrap; gap: 18px; }}
.pane h3 {{ font-size: 14px; margin: 4px 0; }}
canvas.view {{ display: block; image-rendering: pixelated; }}
canvas.strip {{ display: block; margin-top: 4px; cursor: pointer; }}
.panel table {{ border-collapse: collapse; font-size: 12px; margin-top: 6px; }}
.panel td, .panel th {{ border: 1px solid #444; padding: 2px 6px; text-align: right; }}
.panel tr.current {{ background: #334; }}
.panel h4 {{ font-size: 12px; margin: 6px 0 2px; }}
.panel ul {{ font-size: 12px; margin: 0; padding-left: 18px; }}
#legend span {{ display: inline-block; width: 10px; height: 10px; margin: 0 4px 0 10px; }}
#viewer-state {{ display: none; }}
</style></head><body>
<h2>{html.escape(title)}</h2>
<div id="controls">
<input type="range" id="slice" min="0" value="0" step="1"><span id="slice-label"></span>
<select id="round"></select>
<select id="window">{options}<option value="custom">custom</option></select>
<label>level <input id="level" type="number" value="40" style="width:5em"></label>
<label>width <input id="width" type="number" value="400" style="width:5em"></label>
<label><input type="checkbox" id="show-truth"> truth</label>
<label><input type="checkbox" id="show-pred"> prediction</label>
<label><input type="checkbox" id="fill"> filled</label>
<label><input type="checkbox" id="earlier"> earlier rounds' prompts (dimmed)</label>
</div>
<div id="legend">{legend}</div>
<div id="panes"></div>
<pre id="viewer-state"></pre>
<script type="application/json" id="viewer-data">{payload}</script>
<script>{script}</script>
</body></html>
"""


def page_name(page: list[tuple[RunResults, pd.Series]]) -> str:
    """File name of one viewer page: case, structure, settings and protocol."""
    row = page[0][1]
    settings = "+".join(dict.fromkeys(str(r["setting"]) for _, r in page))
    return slug(f"{row['case']}__{row['label_name']}__{settings}__{row['protocol']}") + ".html"


def write_views(run_dirs: Sequence[str | Path], out: str | Path, sel: Selection = Selection(),
                quality: int = CT_QUALITY) -> list[Path]:
    """Write the viewer page(s) of ``run_dirs`` for the objects of ``sel``.

    ``out`` ending in ``.html`` is one page (the selection must name one object); otherwise a
    folder that receives one page per object and an ``index.html``. Returns the pages written.
    """
    runs = [read_run(d) for d in run_dirs]
    pages = plan_views(runs, sel)
    out = Path(out)
    single = out.suffix.lower() == ".html"
    if single and len(pages) != 1:
        raise ConfigError(f"--out {out}: the selection ({_describe(sel)}) matches {len(pages)} objects; name one "
                          "with --case, --structure and --protocol, or give a folder")
    loaders: dict[int, Any] = {}
    written: list[Path] = []
    for page in pages:
        panes = []
        for run, row in page:
            if id(run) not in loaders:
                loader, why = qc.dataset_loader(run.meta)
                if loader is None:
                    raise InputError(run.path / "run.json", f"the dataset cannot be opened here ({why})")
                loaders[id(run)] = loader
            case_obj = loaders[id(run)](str(row["case"]), run.orientation(str(row["protocol"])))
            panes.append(pane_json(pane_source(run, row, case_obj), quality))
        path = out if single else out / page_name(page)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(page_html(panes, panes[0]["title"]), encoding="utf-8")
        written.append(path)
    if not single:
        items = "".join(f'<li><a href="{html.escape(p.name)}">{html.escape(p.stem)}</a></li>' for p in written)
        (out / "index.html").write_text(f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>annosim viewers"
                                        f"</title></head><body><h2>annosim viewers</h2><ul>{items}</ul></body></html>",
                                        encoding="utf-8")
    return written
