"""Size and load time of a replay viewer page for a 512 x 512 x 200 case with 8 rounds.

The sample CT (../shared/data/totalseg-abdomen) is resampled (linear) to 512 x 512 x 200 and its
liver taken as the truth; the 8 rounds' predictions are the truth shifted by 8 - k voxels in x
(k = round), so that every round differs. Prints the page size, the time to write it and, when
Chromium is installed, the wall time of a headless load that renders the first view.

    python benchmarks/viewer_size.py [--shape 200,512,512]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from scipy import ndimage

from annosim.report.qc import QCObject
from annosim.report.viewer import page_html
from annosim.report.viewer_data import PaneSource, pane_json


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", default="200,512,512", help="Z,Y,X of the resampled case")
    args = ap.parse_args()
    shape = tuple(int(s) for s in args.shape.split(","))
    data = Path(__file__).resolve().parents[2] / "shared" / "data" / "totalseg-abdomen"
    ct = np.asarray(nib.load(data / "ct.nii.gz").dataobj, dtype=np.float32).transpose(2, 1, 0)
    seg = np.asarray(nib.load(data / "seg.nii.gz").dataobj).transpose(2, 1, 0)
    zoom = [t / s for t, s in zip(shape, ct.shape)]
    image = ndimage.zoom(ct, zoom, order=1)[: shape[0], : shape[1], : shape[2]]
    truth = ndimage.zoom((seg == 5).astype(np.float32), zoom, order=1)[: shape[0], : shape[1], : shape[2]] > 0.5
    preds = {k: np.roll(truth, 8 - k, axis=2) for k in range(1, 9)}
    rounds = pd.DataFrame({"round": range(1, 9), "dice": np.linspace(0.8, 0.9, 8), "clicks": range(1, 9)})
    prompts = [{"round": k, "kind": "point", "z": shape[0] // 2, "y": shape[1] // 2, "x": shape[2] // 2,
                "positive": True} for k in range(1, 9)]
    src = PaneSource(QCObject("liver (resampled sample CT)", image, truth, rounds, prompts, preds, "he2024"),
                     None, ("dice",), "benchmark - full", 8)
    t0 = time.perf_counter()
    html = page_html([pane_json(src)], "viewer size benchmark")
    t_write = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "viewer.html"
        page.write_text(html, encoding="utf-8")
        size = page.stat().st_size
        print(f"case {shape[0]} x {shape[1]} x {shape[2]}, 8 rounds: page {size / 2**20:.1f} MiB, "
              f"written in {t_write:.1f} s")
        exe = shutil.which("chromium")
        if exe:
            cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp}/p",
                   "--virtual-time-budget=30000", "--dump-dom", page.as_uri()]
            t0 = time.perf_counter()
            dom = subprocess.run(cmd, capture_output=True, text=True, timeout=300).stdout
            ready = '"ready":true' in dom
            print(f"headless Chromium load to the first rendered view: {time.perf_counter() - t0:.1f} s "
                  f"(rendered: {ready})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
