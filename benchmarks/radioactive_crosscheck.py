"""Run RadioActive's own prompt functions beside ``annosim.protocols.radioactive_rules`` on random
volumes and count identical results (the README's "How exact" for ``radioactive-*``).

Usage: ``python benchmarks/radioactive_crosscheck.py SRC`` where ``SRC`` is the ``src`` folder of a
MIC-DKFZ/radioactive checkout at commit 1796386. The source's model, I/O and GPU modules (which
the prompt functions do not use) are replaced by empty stand-ins in a temporary folder, so only
numpy, scipy, scikit-image and nibabel are needed. Exits 1 at the first difference.
"""

from __future__ import annotations

import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
from scipy import ndimage

import radioactive_source

STUBS = {
    "loguru.py": "class _L:\n    def __getattr__(self, k):\n        return lambda *a, **kw: None\nlogger = _L()\n",
    "radioa/model/inferer.py": "class Inferer: pass\n",
    "radioa/model/SAMMed3D.py": "class SAMMed3DInferer: pass\n",
    "radioa/utils/transforms.py": "def orig_to_canonical_sparse_coords(*a, **k): pass\n"
                                  "def transform_prompt_to_model_coords(*a, **k): pass\n",
    "radioa/utils/analysis.py": "def compute_dice(*a): pass\n",
    "radioa/utils/image.py": "def get_crop_pad_params_from_gt_or_prompt(*a): pass\n",
    "radioa/utils/result_data.py": ("class PromptResult:\n    def __init__(self, **kw):\n"
                                    "        self.__dict__.update(kw)\n"),
    "radioa/datasets_preprocessing/conversion_utils.py": "def load_any_to_nib(*a): pass\n",
    # the Prompter base: its seed (PR L61-63), slices (PR L81-83) and Dice (PR L65-79); orig = model space
    "radioa/prompts/prompter.py": (
        "import numpy as np\n"
        "class Prompter:\n"
        "    def __init__(self, inferer, seed):\n"
        "        self.inferer, self.seed = inferer, seed\n"
        "        np.random.seed(seed)\n"
        "    def get_slices_to_infer(self):\n"
        "        return np.where(np.any(self.groundtruth_SAR, axis=(1, 2)))[0]\n"
        "    def transform_prompt_to_original_coords(self, p):\n"
        "        return p\n"
        "    def get_performance(self, pred):\n"
        "        g = self.groundtruth_orig\n"
        "        tp, fp, fn = (pred * g).sum(), (pred * (1 - g)).sum(), ((1 - pred) * g).sum()\n"
        "        return float(2 * tp / (2 * tp + fp + fn))\n"
    ),
    "rich/prompt.py": "class Prompt: pass\n",
    "triton/language/extra/cuda.py": "num_threads = None\n",
}
SOURCE_FILES = ("radioa/prompts/prompt_utils.py", "radioa/prompts/prompt.py", "radioa/prompts/prompt_3d.py",
                "radioa/prompts/interactive_prompter.py", "radioa/utils/interactivity.py")


def build_tree(src: Path, root: Path) -> None:
    """The source's modules and the stand-ins under ``root`` (:mod:`radioactive_source`)."""
    radioactive_source.build_tree(src, root, SOURCE_FILES, STUBS)


def check(ok: bool, what: str, t: int) -> None:
    if not ok:
        print(f"difference in {what} on volume {t}")
        raise SystemExit(1)


def check_algo2d(algo, gen: np.random.Generator, g: np.ndarray, pred: np.ndarray, t: int) -> int:
    """IP L621-669 (``threeDCroppedFromCenterAnd2dAlgo``'s ``get_next_prompt_step``, the source's
    global numpy state warmed by a few draws) beside ``radioactive3d_rules.algo2d_step`` on the
    same isolation box: the same point, label and numpy state after. 0 where the source fails."""
    from annosim.protocols import radioactive3d_rules as r3
    from annosim.protocols import radioactive_rules as rr
    from radioa.prompts.prompt import PromptStep

    p = np.array([int(gen.integers(0, s)) for s in g.shape])
    size = (8, 8, 8)
    gi, pi = r3.isolate(g, p, size), r3.isolate(pred, p, size)
    if np.array_equal(gi, pi):
        return 0
    warm = int(gen.integers(0, 5))
    np.random.seed(1)
    np.random.random_sample(warm)
    rng = rr.SourceRandom()
    rng.state.random_sample(warm)
    algo.groundtruth_model = g.astype(np.uint8)
    step = algo.get_next_prompt_step(pred.astype(np.uint8), None, [PromptStep(point_prompts=(p[None], [1]))])
    mine = r3.algo2d_step(pi, gi, rng)
    check(mine is not None and np.asarray(step.coords)[0].tolist() == mine[0].tolist()
          and int(np.asarray(step.labels)[0]) == mine[1], "2dAlgo step", t)
    s1, s2 = np.random.get_state(), rng.state.get_state()
    check(np.array_equal(s1[1], s2[1]) and s1[2] == s2[2], "numpy state after the 2dAlgo step", t)
    return 1


def main(src: Path, n: int = 400) -> None:
    from annosim.protocols import radioactive_rules as rr
    from radioa.prompts import prompt_utils as pu
    from radioa.prompts import interactive_prompter as ip
    from radioa.prompts.interactive_prompter import twoDInteractivePrompter
    from radioa.utils import interactivity as ia

    prompter = object.__new__(twoDInteractivePrompter)
    prompter.seed, prompter.contour_distance, prompter.disk_size_range = 1, 2, (0, 0)
    prompter.scribble_length, prompter.negative_failed_choose_n_points = 0.6, 3
    gen = np.random.default_rng(0)
    counts = dict.fromkeys(("prompts", "scribbles", "negative", "fallback", "line", "positive", "2dalgo"), 0)
    algo = object.__new__(ip.threeDCroppedFromCenterAnd2dAlgoInteractivePrompterNoPrevPoint)
    algo.seed, algo.contour_distance, algo.disk_size_range, algo.scribble_length = 1, 2, (0, 0), 0.6
    algo.negative_failed_choose_n_points, algo.num_corrective_prompts, algo.n_ccs_positive_interaction = 5, 1, 1
    algo.isolate_around_initial_point_size = (8, 8, 8)
    for t in range(n):
        shape = (int(gen.integers(3, 12)), int(gen.integers(8, 30)), int(gen.integers(8, 30)))
        g = ndimage.binary_dilation(gen.random(shape) < 0.06, iterations=int(gen.integers(1, 3)))
        g &= (gen.random(shape[0]) < 0.8)[:, None, None]
        if gen.random() < 0.3:  # a plane without truth (where an FP bar may go)
            g[:, int(gen.integers(0, shape[1]))] = False
        if not g.any():
            continue
        u8, fg = g.astype(np.uint8), rr.gt_slices(g)
        k = min(5, len(fg))
        check(np.array_equal(pu.point_interpolation(u8, k).coords[:, [2, 1, 0]], rr.interpolation_points(g, k)),
              "point interpolation", t)
        boxes = pu.box_interpolation(pu.get_seed_boxes(u8, min(3, len(fg)))).boxes
        check({int(z): tuple(int(v) for v in b) for z, b in boxes.items()}
              == rr.interpolate_boxes(rr.seed_boxes(g, min(3, len(fg)))), "box interpolation", t)
        check(np.array_equal(pu.get_pos_clicks2D_row_major(u8, 1, seed=1).coords[:, [2, 1, 0]],
                             rr.one_point_per_slice(g, rr.SourceRandom())), "one point per slice", t)
        m = rr.median_seed_slice(g)
        mine = rr.random_slice_points(g[m], 5, rr.SourceRandom().reseed())
        check(np.array_equal(pu.get_seed_point(u8, 5, 1).coords[:, [2, 1, 0]],
                             np.column_stack([np.full(len(mine), m), mine])), "propagation seed", t)
        counts["prompts"] += 1
        if gen.random() < 0.5:  # mostly FP: a dilated, thinned truth
            pred = ndimage.binary_dilation(g, iterations=int(gen.integers(0, 3))) & (gen.random(shape) < 0.85)
        else:                   # mostly FN: an eroded truth
            pred = ndimage.binary_erosion(g) & (gen.random(shape) < 0.9)
        pred |= gen.random(shape) < 0.02
        free = np.flatnonzero(~g.any(axis=(0, 2)))
        if len(free) and gen.random() < 0.3:
            pred[:, free[0], :] = True
        plane = int(gen.integers(0, shape[1]))
        if g[:, plane].any():
            a = ia.gen_contour_fp_scribble(u8[:, plane].astype(float), pred[:, plane].astype(np.uint8),
                                           2, (0, 0), 0.6, seed=1, verbose=False)
            b = rr.contour_scribble(g[:, plane], pred[:, plane])
            check((a is None) == (b is None) and (a is None or np.array_equal(a, b)), "scribble", t)
            counts["scribbles"] += 1
        if np.array_equal(pred, g):
            continue
        warm = int(gen.integers(0, 5))
        np.random.seed(1)
        np.random.random_sample(warm)
        rng = rr.SourceRandom()
        rng.state.random_sample(warm)
        p8 = pred.astype(np.uint8)
        fn, fp = (p8 == 0) & (u8 == 1), (p8 == 1) & (u8 == 0)
        negative = prompter.get_generate_negative_prompts_flag(fn, fp)
        step = prompter.generate_negative_promptstep(u8, p8, fp) if negative else \
            prompter.generate_positive_promptstep(fn, 1)
        coords, labels = rr.refinement_step(g, pred, rng)
        check(np.array_equal(np.asarray(step.coords), coords) and np.array_equal(np.asarray(step.labels), labels),
              "refinement step", t)
        s1, s2 = np.random.get_state(), rng.state.get_state()
        check(np.array_equal(s1[1], s2[1]) and s1[2] == s2[2], "numpy state after the step", t)
        counts["negative" if negative else "positive"] += 1
        counts["fallback"] += int(negative and set(labels.tolist()) == {1})
        counts["line"] += int(negative and not g[:, rr.max_fp_plane(pred & ~g)].any())
        counts["2dalgo"] += check_algo2d(algo, gen, g, pred, t)
    counts["propagations"] = check_propagation(gen, n // 4)
    counts["loops"] = check_loops(gen, n // 8)
    print("identical:", ", ".join(f"{k} {v}" for k, v in counts.items()))


def slice_answer(tissue: np.ndarray, z: int, points: np.ndarray) -> np.ndarray:
    """A deterministic 2D "model" on SAR slice ``z``: the tissue within 4 px of the points' mean
    (empty when the mean is more than 4 px from any tissue)."""
    yy, xx = np.ogrid[: tissue.shape[1], : tissue.shape[2]]
    cy, cx = np.asarray(points, dtype=float).reshape(-1, 2).mean(axis=0)
    return tissue[z] & ((yy - cy) ** 2 + (xx - cx) ** 2 <= 16)


def check_propagation(gen: np.random.Generator, n: int) -> int:
    """PU L509-573 (``get_seed_point`` + ``point_propagation`` with a stand-in inferer) beside
    ``radioactive-point-propagation``'s first prompts (refinements=0) on the same 2D answers."""
    from annosim.models.base import SliceModelBase
    from annosim.protocols import radioactive_rules as rr
    from annosim.protocols.registry import get_protocol
    from radioa.prompts import prompt_utils as pu

    class SourceInferer:
        def __init__(self, tissue):
            self.tissue = tissue

        def transform_promptstep_to_model_coords(self, prompt):  # xyz -> the model's zyx, a copy
            import copy

            out = copy.deepcopy(prompt)
            out.coords = np.asarray(prompt.coords)[:, ::-1]
            return out

        def predict(self, prompt, promptstep_in_model_coord_system=True):
            seg = np.zeros(self.tissue.shape, np.uint8)
            for z in prompt.get_slices_to_infer():
                seg[z] = slice_answer(self.tissue, int(z), prompt.coords[prompt.coords[:, 0] == z][:, 1:])
            return seg, None, None

        def transform_to_model_coords_dense(self, seg, is_seg):
            return seg, None

    class Model(SliceModelBase):
        def __init__(self, tissue):
            super().__init__()
            self.tissue = tissue

        def add_clicks(self, z, points, labels, replace=False):
            raise AssertionError

        def propagate(self):
            raise AssertionError

        def predict_slice(self, z, points=None, labels=None, box=None):
            sar = np.column_stack([self.shape[1] - 1 - points[:, 0], self.shape[2] - 1 - points[:, 1]])
            return slice_answer(self.tissue, z, sar)[::-1, ::-1]

    done = 0
    for t in range(n):
        shape = (int(gen.integers(4, 14)), int(gen.integers(10, 30)), int(gen.integers(10, 30)))
        g = ndimage.binary_dilation(gen.random(shape) < 0.05, iterations=2)
        if not g.any():
            continue
        tissue = ndimage.binary_dilation(g, iterations=int(gen.integers(0, 3))) & (gen.random(shape) < 0.9)
        seed = pu.get_seed_point(g.astype(np.uint8), 5, 1)
        src = pu.point_propagation(SourceInferer(tissue), seed, rr.gt_slices(g), 1, 5).coords
        model = Model(tissue)
        model.set_volume(np.zeros(shape, np.float32), (1.0, 1.0, 1.0))
        out = list(get_protocol("radioactive-point-propagation", refinements=0, mask_prompts=False)
                   .run_object(model, rr.to_sar(g), None, np.random.default_rng(0)))
        mine = [(p.z, shape[1] - 1 - p.y, shape[2] - 1 - p.x) for p in out[0].prompts]
        check(sorted(mine) == sorted(tuple(int(v) for v in c) for c in src), "point propagation", t)
        done += 1
    return done


def loop_answer(tissue, z, pts, labs, box, mask):
    """A deterministic 2D "model" with mask prompts, on SAR slice ``z``: the tissue within 4 px
    of each positive point (or inside the exclusive ``(x0, y0, x1, y1)`` box), or-ed with the
    mask prompt, minus discs of 2 px around the negative points."""
    yy, xx = np.ogrid[: tissue.shape[1], : tissue.shape[2]]
    out = np.zeros(tissue.shape[1:], bool) if mask is None else np.asarray(mask, bool).copy()
    if box is not None:
        x0, y0, x1, y1 = box
        out |= tissue[z] & (yy >= y0) & (yy < y1) & (xx >= x0) & (xx < x1)
    for (y, x), lab in zip(np.asarray(pts).reshape(-1, 2), np.asarray(labs).reshape(-1)):
        if lab == 1:
            out |= tissue[z] & ((yy - y) ** 2 + (xx - x) ** 2 <= 16)
    for (y, x), lab in zip(np.asarray(pts).reshape(-1, 2), np.asarray(labs).reshape(-1)):
        if lab == 0:
            out &= (yy - y) ** 2 + (xx - x) ** 2 > 4
    return out


def check_loops(gen: np.random.Generator, n: int) -> int:
    """``InteractivePrompter.predict_image`` (IP L100-163) of the four 2D prompters (and
    PointInterpolation WithPrevPoint) with a stand-in SAM-like inferer (only prompted slices
    inferred, the last call's outputs as mask prompts, other slices kept: SAM L221-294,
    ``inferer.py`` L93-104) beside annosim's protocols on the same 2D answers: the six results."""
    import copy

    from annosim.models.base import SliceModelBase
    from annosim.protocols import radioactive_rules as rr
    from annosim.protocols.registry import get_protocol
    from radioa.prompts import interactive_prompter as ip

    class SourceInferer:
        def __init__(self, tissue):
            self.tissue = tissue

        def set_image(self, path):
            pass

        def transform_promptstep_to_model_coords(self, prompt):
            out = copy.deepcopy(prompt)
            if prompt.coords is not None:
                out.coords = np.asarray(prompt.coords)[:, ::-1]
            if prompt.boxes is not None:  # xyxy stays xyxy (the SAM inferer reads boxes that way)
                out.boxes = dict(prompt.boxes)
            return out

        def transform_to_model_coords_dense(self, seg, is_seg):
            return seg, None

        def predict(self, prompt, prev_seg=None, promptstep_in_model_coord_system=True):
            seg = np.zeros(self.tissue.shape, np.uint8)
            masks = prompt.masks if prompt.masks is not None else {}
            low = {}
            for z in prompt.get_slices_to_infer():
                z = int(z)
                pts, labs = np.zeros((0, 2)), np.zeros(0)
                if prompt.coords is not None:
                    sel = prompt.coords[:, 0] == z
                    pts, labs = prompt.coords[sel][:, 1:], np.asarray(prompt.labels)[sel]
                box = prompt.boxes.get(z) if prompt.boxes is not None else None
                seg[z] = loop_answer(self.tissue, z, pts, labs, box, masks.get(z))
                low[z] = seg[z].astype(bool)
            if prev_seg is not None:
                missing = np.setdiff1d(np.where(np.any(prev_seg, axis=(1, 2)))[0], list(low))
                seg[missing] = prev_seg[missing]
            return seg, low, seg

    class Model(SliceModelBase):
        def __init__(self, tissue):
            super().__init__()
            self.tissue = tissue

        def add_clicks(self, z, points, labels, replace=False):
            raise AssertionError

        def propagate(self):
            raise AssertionError

        def _sar(self, points):
            p = np.asarray(points).reshape(-1, 2)
            return np.column_stack([self.shape[1] - 1 - p[:, 0], self.shape[2] - 1 - p[:, 1]])

        def predict_slice(self, z, points=None, labels=None, box=None):
            ny, nx = self.shape[1:]
            sar_box = None if box is None else (nx - 1 - box[3], ny - 1 - box[2], nx - box[1], ny - box[0])
            pts = np.zeros((0, 2)) if points is None else self._sar(points)
            labs = np.zeros(0) if labels is None else labels
            return loop_answer(self.tissue, z, pts, labs, sar_box, None)[::-1, ::-1]

        def predict_slice_masked(self, z, mask, points=None, labels=None):
            return loop_answer(self.tissue, z, self._sar(points), labels, None, mask[::-1, ::-1])[::-1, ::-1]

    pairs = (("PointInterpolationInteractivePrompterNoPrevPoint", "radioactive-point-interpolation", {}),
             ("PointInterpolationInteractivePrompterWithPrevPoint", "radioactive-point-interpolation",
              {"prev_prompts": True}),
             ("BoxInterpolationInteractivePrompterNoPrevPoint", "radioactive-box-interpolation", {}),
             ("OnePointPer2DSliceInteractivePrompterNoPrevPoint", "radioactive-one-point", {}),
             ("PointPropagationInteractivePrompterNoPrevPoint", "radioactive-point-propagation", {}))
    done = stopped = 0
    for t in range(n):
        shape = (int(gen.integers(4, 12)), int(gen.integers(12, 30)), int(gen.integers(12, 30)))
        g = ndimage.binary_dilation(gen.random(shape) < 0.05, iterations=2)
        if not g.any():
            continue
        tissue = ndimage.binary_dilation(g, iterations=int(gen.integers(0, 3))) & (gen.random(shape) < 0.9)
        if t % 3 == 0:  # the truth itself: perfect predictions (the stop rule) become reachable
            tissue = g.copy()
        for cls, name, params in pairs:
            src = getattr(ip, cls)(SourceInferer(tissue), seed=1, max_iter=5)
            gi = g.astype(np.uint8)
            src.groundtruth_model = src.groundtruth_SAR = src.groundtruth_orig = gi
            results = [r.predicted_image.astype(bool) for r in src.predict_image("case")]
            model = Model(tissue)
            model.set_volume(np.zeros(shape, np.float32), (1.0, 1.0, 1.0))
            out = list(get_protocol(name, **params).run_object(model, rr.to_sar(g), None, np.random.default_rng(0)))
            mine = [rr.to_sar(o.prediction) for o in out]
            mine += [mine[-1]] * (6 - len(mine))
            check(len(results) == 6 and all(np.array_equal(a, b) for a, b in zip(results, mine)), f"{cls} loop", t)
            done += 1
            stopped += int(len(out) < 6)
    print(f"loops stopped early on a perfect prediction: {stopped}")
    return done


if __name__ == "__main__":
    if len(sys.argv) != 2 or not (Path(sys.argv[1]) / "radioa/prompts/prompt_utils.py").is_file():
        print("usage: radioactive_crosscheck.py SRC  (SRC = radioactive checkout's src folder)")
        raise SystemExit(2)
    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory() as tmp:
        build_tree(Path(sys.argv[1]), Path(tmp))
        sys.path.insert(0, tmp)
        main(Path(sys.argv[1]))
