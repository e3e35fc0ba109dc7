"""The replay viewer pages a report writes (``viewer/<run>/*.html``) and its objects table with
a link per object (:mod:`annosim.report.viewer`)."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import pandas as pd

from annosim.report import qc, viewer, viewer_data
from annosim.report.figures import slug
from annosim.report.results_io import RunResults, load_predictions



def page_path(out: Path, run: RunResults, row: pd.Series) -> Path:
    """Where the report puts the viewer page of one object."""
    return out / "viewer" / slug(run.path.name) / viewer.page_name([(run, row)])


def write_page(out: Path, run: RunResults, row: pd.Series, case_obj: Any) -> Path | None:
    """The viewer page of one object (``row`` of the objects table) whose case is loaded as
    ``case_obj``; ``None`` when its predictions were not saved."""
    if not load_predictions(run.path, str(row["case"]), int(row["label"]), str(row["setting"]), str(row["protocol"])):
        return None
    path = page_path(out, run, row)
    path.parent.mkdir(parents=True, exist_ok=True)
    pane = viewer_data.pane_json(viewer.pane_source(run, row, case_obj))
    path.write_text(viewer.page_html([pane], pane["title"]), encoding="utf-8")
    return path


def write_all(out: Path, runs: list[RunResults], objects: pd.DataFrame, notes: list[str]) -> None:
    """Viewer pages of every object with saved predictions that has none yet (one case in
    memory at a time); what cannot be drawn is added to ``notes``."""
    for run in runs:
        objs = objects[objects["run"] == run.path.name]
        if objs.empty:
            continue
        loader, why = qc.dataset_loader(run.meta)
        if loader is None:
            notes.append(f"{run.path.name}: no viewer pages - the dataset cannot be opened here ({why}).")
            continue
        for (case, proto), grp in objs.groupby(["case", "protocol"], sort=True):
            todo = [row for _, row in grp.iterrows() if not page_path(out, run, row).exists()]
            if not todo:
                continue
            try:
                case_obj = loader(str(case), run.orientation(str(proto)))
            except Exception as exc:  # noqa: BLE001 - a missing case must not stop the report
                notes.append(f"{run.path.name}: case {case} could not be read for the viewer ({exc}).")
                continue
            for row in todo:
                write_page(out, run, row, case_obj)


def objects_table(out: Path, runs: list[RunResults], objects: pd.DataFrame) -> str:
    """HTML table of every object (run, structure, setting, case, protocol, best Dice) with a
    link to its viewer page where one was written."""
    by_name = {r.path.name: r for r in runs}
    rows = []
    for _, row in objects.sort_values(["run", "label_name", "setting", "case", "protocol"], kind="mergesort").iterrows():
        page = page_path(out, by_name[row["run"]], row)
        link = (f'<a href="{html.escape(page.relative_to(out).as_posix())}">replay</a>' if page.exists() else "-")
        cells = [row["run"], row["label_name"], row["setting"], row["case"], row["protocol"], f"{row['best_dice']:.3f}"]
        rows.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + f"<td>{link}</td></tr>")
    head = "".join(f"<th>{h}</th>" for h in ("run", "structure", "setting", "case", "protocol", "best Dice", "viewer"))
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"
