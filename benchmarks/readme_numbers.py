"""Regenerate the Dice numbers the README quotes for the ``classical`` model.

Runs each command of :data:`ROWS` (the same command lines the README shows) into a scratch
folder, reads its ``rounds.csv`` and prints mean best-of-rounds Dice per setting, as the
README's table. ``--check`` also compares them with the numbers in README.md (exit 1 on a
difference). ``make readme-numbers`` runs it.

Usage: ``python benchmarks/readme_numbers.py [--data ../shared/data] [--out DIR] [--check]``
(run from the repository root; about two minutes on two cores).
"""

from __future__ import annotations

import argparse
import csv
import re
import shlex
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ABDOMEN = "spleen,kidney_right,kidney_left,liver,aorta,inferior_vena_cava"
_TS = "DATA/totalseg-abdomen"
_STS = "DATA/ibsi-sts"


@dataclass(frozen=True)
class Row:
    """One README table row: its first cells, the commands that make its runs (``DATA`` = the
    sample folder, ``OUT`` = a scratch folder), and the structure groups whose Dice it shows
    (one group: the mean over its structures; several: one number each, joined by ``sep``)."""

    name: str
    commands: tuple[str, ...]
    groups: tuple[tuple[str, ...], ...]
    sep: str = " / "

    @property
    def command(self) -> str:
        return "\n".join(self.commands)


ROWS: tuple[Row, ...] = (
    Row("`../shared/data/totalseg-abdomen` | spleen, kidneys, liver, aorta, IVC (mean)",
        (f'annosim run --data "{_TS}/ct.nii.gz {_TS}/seg.nii.gz" --labels {ABDOMEN} --no-surface-metrics '
         "--out OUT/abdomen --quiet",), (tuple(ABDOMEN.split(",")),)),
    Row("`../shared/data/ibsi-sts` | two soft-tissue sarcomas (mean)",
        tuple(f'annosim run --data "{_STS}/{c}/CT_image.nii.gz {_STS}/{c}/CT_mask.nii.gz" --no-surface-metrics '
              f"--out OUT/{c} --quiet" for c in ("STS_002", "STS_019")), ((),)),
    Row("demo chest CT (10 mm slices) | right lung / left lung", ("annosim demo --out OUT/demo --quiet",),
        (("right lung",), ("left lung",))),
    Row("demo chest CT | cervical, thoracic, lumbar vertebral column", ("annosim demo --out OUT/demo --quiet",),
        (("cervical vertebral column",), ("thoracic vertebral column",), ("lumbar vertebral column",)), ", "),
    Row("demo chest CT | ribs / tissue", ("annosim demo --out OUT/demo --quiet",), (("ribs",), ("tissue",))),
    Row("`ma2024-box`, six abdominal organs",
        (f'annosim run --data "{_TS}/ct.nii.gz {_TS}/seg.nii.gz" --labels {ABDOMEN} --protocol ma2024-box '
         "--no-surface-metrics --out OUT/abdomen-box --quiet",), (tuple(ABDOMEN.split(",")),)),
)


def best_dice(folders: list[Path]) -> dict[tuple[str, str], list[float]]:
    """(structure, setting) -> best-of-rounds Dice of each object over the folders' rounds.csv."""
    best: dict[tuple[str, str, str, str], float] = {}
    for folder in folders:
        with open(folder / "rounds.csv", newline="") as fh:
            for r in csv.DictReader(fh):
                key = (str(folder), r["case"], r["label_name"], r["setting"])
                best[key] = max(best.get(key, 0.0), float(r["dice"]))
    out: dict[tuple[str, str], list[float]] = {}
    for (_, _, name, setting), value in best.items():
        out.setdefault((name, setting), []).append(value)
    return out


def measure(row: Row, data: Path, out: Path, done: set[str]) -> dict[str, str]:
    """Run ``row``'s commands (each once per invocation) and format its cells per setting."""
    folders = []
    for command in row.commands:
        line = command.replace("DATA", str(data)).replace("OUT", str(out))
        folder = Path(shlex.split(line)[shlex.split(line).index("--out") + 1])
        folders.append(folder)
        if line not in done:
            args = shlex.split(line)
            subprocess.run([sys.executable, "-m", "annosim", *args[1:]], check=True, cwd=REPO,
                           stdout=subprocess.DEVNULL)
            done.add(line)
    values = best_dice(folders)
    cells = {}
    for setting in ("full", "fg-only"):
        nums = []
        for group in row.groups:
            chosen = [v for (name, s), vs in values.items() if s == setting and (not group or name in group)
                      for v in vs]
            nums.append(f"{sum(chosen) / len(chosen):.3f}")
        cells[setting] = row.sep.join(nums)
    return cells


def readme_cells() -> dict[str, dict[str, str]]:
    """The README's cells of each row: ``name -> {setting: text}``."""
    text = (REPO / "README.md").read_text()
    cells = {}
    for row in ROWS[:-1]:
        match = re.search(re.escape("| " + row.name + " | ") + r"([^|]+) \| ([^|]+) \|", text)
        if match:
            cells[row.name] = {"full": match.group(1).strip(), "fg-only": match.group(2).strip()}
    match = re.search(r"`ma2024-box` on the six abdominal organs of the\s+sample: ([0-9.]+) fg-only, ([0-9.]+) full",
                      text)
    if match:
        cells[ROWS[-1].name] = {"fg-only": match.group(1), "full": match.group(2)}
    return cells


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data", help="sample CT folder")
    ap.add_argument("--out", type=Path, default=None, help="keep the results folders here (default: temporary)")
    ap.add_argument("--check", action="store_true", help="compare with README.md; exit 1 on a difference")
    args = ap.parse_args(argv)
    if not (args.data / "totalseg-abdomen").is_dir():
        print(f"readme_numbers: {args.data}: sample data not found (--data)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="annosim-readme-") as tmp:
        out = (args.out or Path(tmp)).resolve()
        done: set[str] = set()
        measured = {row.name: measure(row, args.data.resolve(), out, done) for row in ROWS}
    print("| data | structures | full | fg-only |\n|---|---|---|---|")
    for row in ROWS[:-1]:
        print(f"| {row.name} | {measured[row.name]['full']} | {measured[row.name]['fg-only']} |")
    box = measured[ROWS[-1].name]
    print(f"\nma2024-box, six abdominal organs: {box['fg-only']} fg-only, {box['full']} full")
    if not args.check:
        return 0
    quoted = readme_cells()
    wrong = [f"{name} {s}: README {quoted.get(name, {}).get(s)}, measured {v}"
             for name, cells in measured.items() for s, v in cells.items() if quoted.get(name, {}).get(s) != v]
    for w in wrong:
        print(f"differs: {w}", file=sys.stderr)
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
