"""``annosim view``: the replay viewer of a real run (classical model on
../shared/data/totalseg-abdomen, predictions saved), rendered in headless Chromium.

The page is driven through its own controls by the URL hash (slice slider, round selector),
and what it shows is read back from its state (``#viewer-state``) and from a screenshot, then
checked against ``prompts.jsonl`` and the saved predictions.
"""

from __future__ import annotations

import html as htmllib
import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from annosim.cli import main
from annosim.report.qc import dataset_loader
from annosim.report.viewer_data import rle_decode, rle_encode, window_u8
from browser import chromium_command

GALLBLADDER = 4  # over-tracks into slices 0-1 under classical in round 3 (checked below from the masks)


@pytest.fixture(scope="module")
def run_dir(shared_data, tmp_path_factory) -> Path:
    d = shared_data / "totalseg-abdomen"
    out = tmp_path_factory.mktemp("viewer_run") / "run"
    assert main(["run", "--data", f"{d / 'ct.nii.gz'} {d / 'seg.nii.gz'}", "--model", "classical",
                 "--labels", "gallbladder,pancreas", "--save-predictions", "--out", str(out), "--quiet"]) == 0
    return out


@pytest.fixture(scope="module")
def truth(run_dir) -> np.ndarray:
    load, why = dataset_loader(json.loads((run_dir / "run.json").read_text()))
    assert load is not None, why
    return load("ct", "canonical").label == GALLBLADDER


def _prompts(run_dir: Path, setting: str = "full") -> list[dict]:
    out = []
    for line in (run_dir / "prompts.jsonl").read_text().splitlines():
        p = json.loads(line)
        if p["label"] == GALLBLADDER and p["setting"] == setting:
            out.append(p)
    return out


def _state(chromium: str, page: Path, fragment: str, tmp_path: Path, *extra: str) -> dict:
    cmd = chromium_command(chromium, tmp_path / "profile", "--virtual-time-budget=10000", "--window-size=1400,1400",
                           "--force-device-scale-factor=1", *extra, "--dump-dom",
                           page.resolve().as_uri() + "#" + fragment)
    dom = subprocess.run(cmd, check=True, capture_output=True, timeout=120, text=True).stdout
    m = re.search(r'<pre id="viewer-state">(.*?)</pre>', dom, re.S)
    assert m, "no viewer state in the rendered page"
    state = json.loads(htmllib.unescape(m.group(1)))
    assert state["ready"]
    return state


def _page_requests(net_log: Path) -> list[str]:
    """URLs the page itself requested, from Chromium's ``--log-net-log`` file."""
    text = net_log.read_text().rstrip()
    log = json.loads(text if text.endswith("}") else text.rstrip(",") + "]}")
    start = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    return [str(e["params"].get("url")) for e in log["events"]
            if e["type"] == start and (e.get("params") or {}).get("initiator", "not an origin") != "not an origin"]


def test_network_check_sees_a_page_that_makes_requests(chromium, tmp_path):
    """Negative control of the no-network check below."""
    page = tmp_path / "p.html"
    page.write_text('<html><body><img src="http://127.0.0.1:9/x.png"></body></html>')
    net_log = tmp_path / "net.json"
    subprocess.run(chromium_command(chromium, tmp_path / "profile", "--virtual-time-budget=3000",
                                    f"--log-net-log={net_log}", "--dump-dom", page.resolve().as_uri()),
                   check=True, capture_output=True, timeout=120)
    assert _page_requests(net_log) == ["http://127.0.0.1:9/x.png"]


def test_rle_round_trip_and_window():
    rng = np.random.default_rng(0)
    for _ in range(20):
        m = rng.random((7, 9)) < rng.random()
        assert np.array_equal(rle_decode(rle_encode(m), m.shape), m)
    assert rle_encode(np.ones((2, 2), bool)) == [0, 4]
    assert window_u8(np.array([-1024.0, 1526.0]), -1024.0, 1526.0).tolist() == [0, 255]


def test_view_refuses_an_ambiguous_selection_and_a_run_without_predictions(run_dir, tmp_path, capsys):
    assert main(["view", str(run_dir), "--out", str(tmp_path / "v.html")]) == 2
    assert "matches 4 objects" in capsys.readouterr().err
    bare = tmp_path / "bare"
    import shutil

    shutil.copytree(run_dir, bare, ignore=shutil.ignore_patterns("predictions", ".annosim.lock"))
    assert main(["view", str(bare), "--out", str(tmp_path / "b.html"), "--structure", "gallbladder",
                 "--setting", "full"]) == 2
    assert "--save-predictions" in capsys.readouterr().err
    assert not (tmp_path / "b.html").exists()
    assert main(["view", str(run_dir), "--out", str(tmp_path / "x.html"), "--setting", "ful"]) == 2


def test_viewer_shows_the_round_clicks_outlines_and_over_tracked_slices(run_dir, truth, chromium, tmp_path):
    page = tmp_path / "gallbladder.html"
    assert main(["view", str(run_dir), "--out", str(page), "--structure", "gallbladder", "--setting", "full"]) == 0
    text = page.read_text()
    # No external resource of any kind: every src/href is inline data or a fragment.
    assert not re.search(r"""(src|href)\s*=\s*["'](?!data:|#)""", text)
    assert "http://" not in text and "https://" not in text
    assert page.stat().st_size < 2_000_000

    prompts = _prompts(run_dir)
    r3 = [p for p in prompts if p["round"] == 3]
    assert r3, "round 3 of the gallbladder has corrective clicks"
    z = r3[-1]["z"]
    with np.load(run_dir / "predictions" / "ct" / f"he2024__{GALLBLADDER}__full.npz") as npz:
        pred3 = npz["round_3"].astype(bool)

    net_log = tmp_path / "net.json"
    state = _state(chromium, page, f"slice={z}&round=3", tmp_path, f"--log-net-log={net_log}")
    assert state["slice"] == z and state["round"] == 3
    pane = state["panes"][0]
    assert pane["round"] == 3 and not pane["carried"]
    shown = [(p["y"], p["x"], p["positive"]) for p in pane["shownPrompts"] if not p["dimmed"]]
    assert shown == [(p["y"], p["x"], p["positive"]) for p in r3 if p["z"] == z]
    earlier = [(p["round"], p["y"], p["x"]) for p in pane["shownPrompts"] if p["dimmed"]]
    assert earlier == [(p["round"], p["y"], p["x"]) for p in prompts if p["round"] < 3 and p["z"] == z]
    t_any, p_any = truth.any(axis=(1, 2)), pred3.any(axis=(1, 2))
    assert pane["overTracked"] == np.flatnonzero(p_any & ~t_any).tolist() == [0, 1]
    assert pane["missed"] == np.flatnonzero(t_any & ~p_any).tolist()
    inter = (truth & pred3).sum(axis=(1, 2))
    denom = truth.sum(axis=(1, 2)) + pred3.sum(axis=(1, 2))
    want = [None if d == 0 else 2 * i / d for i, d in zip(inter, denom)]
    assert [None if v is None else round(v, 9) for v in pane["sliceDice"]] == \
        [None if v is None else round(float(v), 9) for v in want]
    # The page made no network request (Chromium's own background requests have no page
    # initiator; a page's, e.g. an <img> or fetch() from this file, has initiator "null").
    assert _page_requests(net_log) == []

    # Screenshot: the click of round 3 is drawn at its (y, x), the truth outline in green.
    shot = tmp_path / "shot.png"
    cmd = chromium_command(chromium, tmp_path / "profile", "--virtual-time-budget=10000", "--force-device-scale-factor=1",
                           "--hide-scrollbars", "--window-size=1400,1400", f"--screenshot={shot}",
                           page.resolve().as_uri() + f"#slice={z}&round=3")
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    img = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    left, top, s = pane["canvas"]["left"], pane["canvas"]["top"], pane["canvas"]["scale"]

    def pixel(y: int, x: int) -> np.ndarray:
        return img[int(round(top + (y + 0.5) * s)), int(round(left + (x + 0.5) * s))]

    click = r3[-1]
    want_colour = (0x00, 0xE5, 0xFF) if click["positive"] else (0xFF, 0x99, 0x00)
    assert np.abs(pixel(click["y"], click["x"]) - want_colour).max() <= 8
    # The click's slice is over-tracked (no truth): the prediction's outline is drawn in red.
    assert not truth[z].any() and pred3[z].any()
    p = pred3[z]
    edge = p & ~(np.roll(p, 1, 0) & np.roll(p, -1, 0) & np.roll(p, 1, 1) & np.roll(p, -1, 1))
    far = [(y, x) for y, x in zip(*np.nonzero(edge))
           if all(abs(y - q["y"]) * s > 8 or abs(x - q["x"]) * s > 8 for q in prompts if q["z"] == z)]
    assert len(far) > 10
    assert all(np.abs(pixel(*yx) - (0xFF, 0x20, 0x20)).max() <= 8 for yx in far)
    inside = [(y, x) for y, x in zip(*np.nonzero(p & ~edge)) if (y, x) not in far]
    assert inside and np.abs(pixel(*inside[0]) - (0xFF, 0x20, 0x20)).max() > 40  # outline, not filled


def test_viewer_sets_full_beside_fg_only_with_one_slider(run_dir, chromium, tmp_path):
    page = tmp_path / "both.html"
    assert main(["view", str(run_dir), "--out", str(page), "--structure", "gallbladder",
                 "--setting", "full,fg-only"]) == 0
    state = _state(chromium, page, "slice=0&round=3&window=lung", tmp_path)
    full, fg = state["panes"]
    assert full["heading"].endswith("full") and fg["heading"].endswith("fg-only")
    assert state["slice"] == 0 and state["window"] == {"name": "lung", "level": -600, "width": 1500}
    assert full["overTracked"] == [0, 1]
    assert fg["overTracked"] == []  # fg-only predicts nothing outside the truth's slices


def test_report_links_each_qc_object_to_its_viewer(run_dir, tmp_path):
    out = tmp_path / "rep"
    assert main(["report", str(run_dir), "--out", str(out), "--n-boot", "200"]) == 0
    page = (out / "report.html").read_text()
    links = re.findall(r'<a href="([^"]+\.html)">replay viewer</a>', page)
    assert len(links) == 4  # gallbladder and pancreas, two settings, one object each
    for link in links:
        viewer = (out / link).read_text()
        assert '<pre id="viewer-state">' in viewer and "viewer-data" in viewer


def test_viewer_sets_two_runs_beside_each_other(run_dir, chromium, tmp_path):
    import shutil

    other = tmp_path / "other-run"
    shutil.copytree(run_dir, other, ignore=shutil.ignore_patterns(".annosim.lock"))
    page = tmp_path / "two.html"
    assert main(["view", str(run_dir), str(other), "--out", str(page), "--structure", "pancreas",
                 "--setting", "full"]) == 0
    state = _state(chromium, page, "slice=5&round=8", tmp_path)
    a, b = state["panes"]
    assert a["heading"].startswith("run:") and b["heading"].startswith("other-run:")
    assert a["overTracked"] == b["overTracked"] == [0, 1] and a["sliceDice"] == b["sliceDice"]
    assert main(["view", str(run_dir), str(other), "--out", str(tmp_path / "x.html"), "--structure", "pancreas",
                 "--setting", "full", "--protocol", "cvpr25"]) == 2  # nothing matches


def test_report_viewers_all_links_every_object_row(run_dir, tmp_path):
    out = tmp_path / "rep"
    assert main(["report", str(run_dir), "--out", str(out), "--n-boot", "200", "--no-qc", "--viewers", "all"]) == 0
    page = (out / "report.html").read_text()
    rows = re.findall(r"<tr><td>run</td><td>(\w+)</td><td>([\w-]+)</td>.*?<a href=\"([^\"]+)\">replay</a>", page)
    assert sorted((s, st) for s, st, _ in rows) == [("gallbladder", "fg-only"), ("gallbladder", "full"),
                                                     ("pancreas", "fg-only"), ("pancreas", "full")]
    assert all((out / link).is_file() for _, _, link in rows)
    assert main(["report", str(run_dir), "--out", str(out), "--n-boot", "200", "--no-qc", "--viewers", "none"]) == 0
    assert "replay</a>" not in (out / "report.html").read_text() and not list((out / "viewer").rglob("*.html"))
