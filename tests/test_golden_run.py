"""A golden run (classical model, he2024, shen2024-points and cvpr25, both settings, four labels
of the sample CT) must come out byte for byte (rounds.csv without timing columns, prompts.jsonl).

Recorded before the run-path redesign, which changed no number. The he2024 rows were recorded
again when he2024 was made to read the paper literally (issue 13: whole-foreground first click,
start-slice tie positive, worst slice among truth-or-prediction frames, one random stream per
object for both settings); the shen2024-points and cvpr25 rows did not change then. The cvpr25
rows were recorded again when it was made to follow the challenge's code (issue 14: upper-median
box slice with the source's margin, six rounds, seeded choice among equal maxima). The
shen2024-points rows were recorded again when it was made to follow Shen et al.'s code (issue 14:
the >256-pixel video, frame N // 2, deepest-point clicks, two passes, native shen_dice and
shen_nsd columns); the he2024 and cvpr25 values did not change then (only the two new empty
columns were added to their rows). The cvpr25 rows gained the `cvpr25_nsd` column (the
challenge's surfel NSD at 2 mm) when its object-level NSD metrics were switched to it; no other
value changed."""

from __future__ import annotations

import csv
from pathlib import Path

from annosim.cli import main
from results_helpers import rows_without_timing

GOLDEN = Path(__file__).resolve().parent / "golden"


def test_golden_run_is_byte_identical(shared_data, tmp_path):
    ts = shared_data / "totalseg-abdomen"
    out = tmp_path / "run"
    assert main(["run", "--data", f"{ts / 'ct.nii.gz'} {ts / 'seg.nii.gz'}", "--labels",
                 "spleen,kidney_left,gallbladder,pancreas", "--protocol", "he2024,shen2024-points,cvpr25",
                 "--out", str(out), "--quiet"]) == 0
    with open(GOLDEN / "classical_three_protocols_rounds.csv", newline="") as fh:
        golden = list(csv.reader(fh))
    with open(out / "rounds.csv", newline="") as fh:
        header = next(csv.reader(fh))
    assert [c for c in header if c != "model_seconds"] == golden[0]
    assert rows_without_timing(out) == golden[1:]
    assert (out / "prompts.jsonl").read_text() == (GOLDEN / "classical_three_protocols_prompts.jsonl").read_text()
