"""Run RadioActive's own 3D-prompter and SAM-Med3D-inferer functions beside
``annosim.protocols.radioactive3d_rules`` on random volumes and count identical results (the
README's "How exact" for ``radioactive-3d-*``).

Usage: ``python benchmarks/radioactive3d_crosscheck.py SRC [N]`` where ``SRC`` is the ``src``
folder of a MIC-DKFZ/radioactive checkout at commit 1796386. The source's prompt, transform and
nnU-Net resampling modules are loaded as they are, with empty stand-ins for the imports they do
not use here (torchvision, loguru, the loaders); the resampling runs on the CPU (the source asks
for ``device='cuda'``; the function is the same). Needs numpy, scipy, scikit-image, nibabel,
torch, einops, pandas, scikit-learn, batchgenerators and SimpleITK. Exits 1 at the first difference.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

import radioactive_source

STUBS = {
    "loguru.py": "class _L:\n    def __getattr__(self, k):\n        return lambda *a, **kw: None\nlogger = _L()\n",
    "torchvision/transforms/functional.py": "resize = to_pil_image = None\n",
    "torchvision/transforms/__init__.py": "Normalize = Resize = ToTensor = None\n",
    "radioa/datasets_preprocessing/conversion_utils.py": "def load_any_to_nib(*a): pass\n",
    "radioa/model/inferer.py": "class Inferer: pass\n",
}
SOURCE_FILES = ("radioa/prompts/prompt.py", "radioa/prompts/prompt_3d.py", "radioa/prompts/prompt_utils.py",
                "radioa/utils/transforms.py", "radioa/utils/resample.py", "radioa/utils/nnunet/resample_torch.py",
                "radioa/utils/nnunet/default_resampling.py", "radioa/utils/nnunet/configuration.py",
                "radioa/utils/nnunet/simpleitk_reader_writer.py", "radioa/utils/nnunet/base_reader_writer.py")
SPACINGS = ((1.5, 1.5, 1.5), (3.0, 3.0, 3.0), (0.8, 0.8, 2.0), (0.7, 0.7, 5.0), (1.0, 5.0, 1.0), (2.5, 0.9, 1.2))


def build_tree(src: Path, root: Path) -> None:
    """The source's modules and the stand-ins under ``root`` (:mod:`radioactive_source`)."""
    radioactive_source.build_tree(src, root, SOURCE_FILES, STUBS)


def check(ok: bool, what: str, t: int) -> None:
    if not ok:
        print(f"difference in {what} on volume {t}")
        raise SystemExit(1)


def blob(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """A random smooth-ish 3D mask (thresholded sum of random boxes)."""
    m = np.zeros(shape, bool)
    for _ in range(rng.integers(1, 4)):
        lo = [int(rng.integers(0, n)) for n in shape]
        hi = [min(n, a + int(rng.integers(1, max(2, n // 2 + 1)))) for a, n in zip(lo, shape)]
        m[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = True
    return m


def main(src: Path, n: int = 200) -> None:
    import torch

    from annosim.protocols import radioactive3d_rules as r3
    from radioa.prompts import prompt_3d as p3
    from radioa.prompts import prompt_utils as pu
    from radioa.prompts.prompt import PromptStep
    from radioa.utils.nnunet.default_resampling import compute_new_shape
    from radioa.utils.nnunet.resample_torch import resample_torch_fornnunet
    from radioa.utils.transforms import resample_to_spacing_sparse

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    counts = dict.fromkeys(("resample", "image exact", "points", "initial", "center", "isolate", "misclassified"), 0)
    for t in range(n):
        shape = tuple(int(s) for s in rng.integers(4, 24, 3))
        sp, target = SPACINGS[t % len(SPACINGS)], (1.5, 1.5, 1.5)
        img = rng.normal(0, 100, shape)
        gt = blob(rng, shape)
        # S3 L86-108 (RS L11-46): image and label to model space, and back (S3 L101-106)
        new = compute_new_shape(shape, sp, target)
        check(tuple(int(v) for v in new) == r3.model_shape(shape, sp, target), "model shape", t)
        ref = resample_torch_fornnunet(img[None], new, sp, target, is_seg=False, device="cpu",
                                       memefficient_seg_resampling=True)[0]
        check(np.allclose(ref, r3.resample(img, sp, target), rtol=1e-5, atol=1e-3), "image resampling", t)
        ref_g = resample_torch_fornnunet(gt[None].astype(float), new, sp, target, is_seg=True, device="cpu",
                                         memefficient_seg_resampling=True)[0]
        mine_g = r3.resample(gt, sp, target, is_seg=True)
        check(np.array_equal(ref_g != 0, mine_g), "label resampling", t)
        back = resample_torch_fornnunet(ref_g[None], shape, target, sp, is_seg=True, device="cpu",
                                        memefficient_seg_resampling=True)[0]
        mine_b = r3.resample(ref_g != 0, target, sp, shape=shape, is_seg=True)
        check(np.array_equal(back != 0, mine_b), "paste-back", t)
        counts["resample"] += 1
        counts["image exact"] += int(np.array_equal(ref, r3.resample(img, sp, target)))
        # S3 L110-116: sparse coordinates with the resampled shape passed as the current one
        pts = np.array([[int(rng.integers(0, s)) for s in shape] for _ in range(5)])
        ref_p = np.array([resample_to_spacing_sparse(c, sp, target, tuple(new), round=True) for c in pts]).astype(int)
        check(np.array_equal(ref_p, r3.points_to_model(pts, shape, sp, target)), "sparse points", t)
        counts["points"] += 1
        if not gt.any():
            continue
        # P3 L26-47 + IP L348-351 on a SAR truth
        ref0 = p3.get_pos_clicks3D(gt, 1, seed=1).coords[:, ::-1]
        check(np.array_equal(ref0, r3.random_fg_voxel(gt)), "initial voxel", t)
        counts["initial"] += 1
        # IP L466-478: interpolation line, box subset, middle point (coordinates as in model space)
        ns = min(5, len(np.where(np.any(gt, axis=(1, 2)))[0]))
        line = pu.point_interpolation(gt, ns)
        check(np.array_equal(line.coords, r3.interpolation_line(gt)), "interpolation line", t)
        size = (8, 8, 8)
        try:
            sub = p3.get_linearly_spaced_coords(p3.subset_points_to_box(line, size), 1).coords
        except IndexError:  # no point inside the box: the source fails, annosim raises ValueError
            sub = None
        try:
            mine_c = r3.middle_point(r3.subset_to_box(line.coords, size))
        except ValueError:
            mine_c = None
        check((sub is None and mine_c is None) or (sub is not None and mine_c is not None
                                                   and np.array_equal(sub, mine_c)), "centre point", t)
        counts["center"] += 1
        # P3 L100-137: isolation around a point and the reseeded misclassified draw
        p = np.array([int(rng.integers(0, s)) for s in shape])
        seed = PromptStep(point_prompts=(p[None], [1]))
        pred = blob(rng, shape)
        iso_g = p3.isolate_patch_around_point(gt.astype(np.uint8), seed, size)
        iso_p = p3.isolate_patch_around_point(pred.astype(np.uint8), seed, size)
        check(np.array_equal(iso_g != 0, r3.isolate(gt, p, size)), "isolation", t)
        counts["isolate"] += 1
        mine = r3.misclassified_voxel(iso_p, iso_g)
        if mine is None:
            check(np.array_equal(iso_p, iso_g), "no-error stop", t)
            continue
        step = p3.obtain_misclassified_point_prompt_3d(iso_p.astype(int), iso_g.astype(int), 1)
        check(step.coords[0].tolist() == mine[0].tolist() and int(step.labels[0]) == mine[1], "misclassified voxel", t)
        counts["misclassified"] += 1
    print("identical:", ", ".join(f"{k} {v}" for k, v in counts.items()))


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    with tempfile.TemporaryDirectory() as tmp:
        build_tree(Path(sys.argv[1]), Path(tmp))
        sys.path.insert(0, tmp)
        main(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 200)
