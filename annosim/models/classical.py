"""``classical``: a click-driven, weight-free baseline (region growing, geodesic cuts, tracking).

Prompted slice ``z``: its mask is ``base`` edited by its clicks. ``base`` is the mask prompt,
else the box segmentation, else the prediction the slice had from the last :meth:`propagate`
when it was first prompted (SAM2 likewise starts a newly prompted frame from its memory).
A box segments the tissue typical of its middle rather than of the ring ``box_ring_mm`` just
outside it (the box is tight, so that ring is background), keeping the in-band components that
together best fill the box (:func:`classical_ops.box_region`).
A positive click adds the region it selects (pixels within ``click_tolerance_hu`` of the HU
around it, opened to cut thin bridges, connected to it, and no further than ``click_reach``
times the radius of the object's known cross-section). Outside the soft-tissue window (lung,
fat, bone: textured tissue walled in by strong contrast) the band then adapts to the tissue,
each side widening to ``click_adapt_k`` RMS deviations of the selected HU on that side.
Negative clicks then remove what they touch: each mask pixel goes to the nearest click
(geodesic distance whose step cost grows in thin necks, so cuts fall at necks), and pixels
nearest a negative click are removed. On a slice with negative clicks only, the deepest part
of the mask away from them stands in for a positive click; a component with negative clicks
and nothing to keep is removed whole.

Propagation follows SAM2's video predictor (README, "Propagation order"): earliest prompted frame
to the last, then back to the first; a prompted frame keeps its own mask and restarts tracking. A frame between two prompted frames is conditioned by both (SAM2's memory
holds every prompted frame): it gets the union of the tracks arriving from either side.
Tracking from a prompted frame uses an intensity model of the prompted masks nearest to it
(at least ``model_min_mm2`` of them), so a prompt on an atypical slice (partial volume at an
object's end) leaves the tracking elsewhere as it was. The model's range is percentiles of
those masks widened by ``range_margin_hu``; for lung and bone also up to the midpoint between
the object's median HU and its surroundings' (partial-volume pixels count as object).
One step maps the mask on a frame to the next frame: candidates have HU in that range and
the components touching the previous mask eroded by ``seed_mm`` are kept. A component walled
in by contrast (it ends within ``free_grow_mm`` per mm of slice spacing of the previous mask)
is taken whole; one that runs on into tissue of the same density is limited to ``grow_mm`` per
mm of slice spacing (at least 1 px), so that thick slices let the border move further.
Tracking stops (the rest of the pass is empty until a prompted frame) when the new mask is
smaller than ``min_area_mm2``; when, in its part that is not walled in, less than
``min_support`` overlaps the previous mask or the area grows by more than ``max_growth``
times; or when its median HU moves from the model's by more than ``max_mean_shift_hu`` (or
``mean_shift_sd`` standard deviations of the prompted HU, if more). Frames outside ``frames``
stay empty.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from annosim.errors import ConfigError
from annosim.models import classical_ops as ops
from annosim.models.base import SliceModelBase
from annosim.models.patch_slices import SlicePatchMixin
from annosim.params import coerce_overrides


#: Parameters that may be negative (HU levels).
_SIGNED = frozenset({"range_margin_hu", "soft_tissue_low_hu", "soft_tissue_high_hu"})


@dataclass
class ClassicalParams:
    """Parameters of :class:`ClassicalModel` (lengths in mm, intensities in HU)."""

    #: In-plane Gaussian sigma applied to every slice before anything else.
    smooth_mm: float = 1.5
    #: Half-size of the square around a click whose median HU defines the click's tissue.
    click_window_mm: float = 3.0
    #: A positive click selects pixels within this many HU of that median.
    click_tolerance_hu: float = 30.0
    #: Outside the soft-tissue window below, the click's band adapts to the tissue: each
    #: side's tolerance becomes this many RMS deviations of the selected region's HU on that
    #: side (never below ``click_tolerance_hu``); 0 = fixed band everywhere.
    click_adapt_k: float = 2.5
    #: Upper bound of the adapted tolerance on either side.
    click_tolerance_max_hu: float = 150.0
    #: Soft-tissue window: a click whose HU lies in it keeps the fixed band (neighbouring
    #: organs there differ by tens of HU); lung, fat and bone lie outside it.
    soft_tissue_low_hu: float = -150.0
    soft_tissue_high_hu: float = 150.0
    #: A positive click reaches at most this many times the radius of the object's known
    #: cross-section (largest predicted area next to the slice, else on other prompted slices);
    #: 0 = no limit.
    click_reach: float = 1.5
    #: Opening radius on prompted slices: bridges thinner than about twice this are cut.
    open_mm: float = 3.0
    #: Box prompts: the ring just outside the box whose HU stands for the background.
    box_ring_mm: float = 6.0
    #: Box prompts: bandwidth of the kernel densities of HU inside the box and in its ring.
    box_bandwidth_hu: float = 10.0
    #: Box prompts: the object's HU band is where the box's density exceeds the ring's by more
    #: than this fraction of the largest excess.
    box_band_floor: float = 0.1
    #: Step cost exponent of the negative-click cut (higher: cuts snap harder to necks).
    neck_power: float = 2.0
    #: Largest distance the object's border may move between neighbouring frames where it
    #: touches tissue of the same density, in mm per mm of slice spacing (at least 1 px).
    grow_mm: float = 0.3
    #: The same where the object is walled in by contrast (its component of in-range pixels
    #: ends before this distance), in mm per mm of slice spacing: 2 allows a surface 63
    #: degrees from the slice normal, as at a lung's dome between 10 mm slices.
    free_grow_mm: float = 2.0
    #: Erosion of the previous mask that seeds the next frame.
    seed_mm: float = 5.0
    #: Opening radius of the candidates while propagating.
    propagate_open_mm: float = 3.0
    #: Percentiles of the prompted masks' HU that bound the object's intensity range.
    range_low_pct: float = 2.0
    range_high_pct: float = 98.0
    #: HU added on both sides of that range.
    range_margin_hu: float = 10.0
    #: Tracking from a prompted slice uses the HU of the prompted masks nearest to it, pooled
    #: until they cover this area.
    model_min_mm2: float = 500.0
    #: Tracking stops below this area.
    min_area_mm2: float = 20.0
    #: Tracking stops when less than this fraction of the new mask overlaps the previous one.
    min_support: float = 0.5
    #: Tracking stops when the area grows by more than this factor in one step.
    max_growth: float = 1.6
    #: Tracking stops when the mask's median HU is further than this from the object's
    #: (medians: a small mask's border, at partial volume, does not move them).
    max_mean_shift_hu: float = 25.0
    #: ... or this many standard deviations of the prompted masks' HU, if more (a textured
    #: tissue's mean drifts more from slice to slice).
    mean_shift_sd: float = 1.0

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> "ClassicalParams":
        """Build from keyword values (strings from ``--model-arg key=value`` are converted by
        :func:`annosim.params.coerce_overrides`)."""
        params = cls(**coerce_overrides(cls, kwargs, "model 'classical'"))
        params.validate()
        return params

    def validate(self) -> None:
        """Raise :class:`ConfigError` on values outside their meaningful range."""
        for f in fields(self):
            if getattr(self, f.name) < 0 and f.name not in _SIGNED:
                raise ConfigError(f"model 'classical': {f.name} must be >= 0")
        if not 0 <= self.range_low_pct < self.range_high_pct <= 100:
            raise ConfigError("model 'classical': need 0 <= range_low_pct < range_high_pct <= 100")
        if not 0 <= self.min_support <= 1:
            raise ConfigError("model 'classical': min_support must lie in [0, 1]")


@dataclass
class _SliceState:
    """Prompts on one slice: a base mask (prior, box or mask prompt) and the clicks."""

    base: np.ndarray
    mask: np.ndarray | None = None
    points: list[tuple[int, int]] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)


class ClassicalModel(SlicePatchMixin, SliceModelBase):
    """Weight-free interactive baseline: click regions, geodesic cuts, frame-to-frame tracking;
    a patch (``patch_size``, ``patch_spacing``; in HU) is a volume of its own (SlicePatchMixin)."""

    name = "classical"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__()
        self.params = ClassicalParams.from_kwargs(**self._take_patch_args(kwargs, "model 'classical'"))
        self._image: np.ndarray | None = None
        self._slices: dict[int, _SliceState] = {}
        self._pred: np.ndarray | None = None

    # -- case and object -------------------------------------------------------------------
    def set_volume(self, volume: np.ndarray, spacing: tuple[float, float, float]) -> None:
        """Smooth every slice once (float32 (Z, Y, X) HU); spacing (sz, sy, sx) in mm."""
        super().set_volume(volume, spacing)
        sy, sx = self.spacing[1], self.spacing[2]  # type: ignore[index]
        sigma = (0.0, self.params.smooth_mm / sy, self.params.smooth_mm / sx)
        vol = np.asarray(volume, dtype=np.float32)
        self._image = ndi.gaussian_filter(vol, sigma) if max(sigma) > 0 else vol.copy()
        self._slices = {}
        self._pred = None

    def start_object(self, frames: np.ndarray | None = None) -> None:
        super().start_object(frames)
        self._slices = {}
        self._pred = None

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "params": asdict(self.params), **self.patch_description()}

    # -- unit conversion -------------------------------------------------------------------
    def _px(self, mm: float) -> int:
        """Pixels for a length in mm (in-plane, mean of the two spacings), rounded."""
        sy, sx = self.spacing[1], self.spacing[2]  # type: ignore[index]
        return int(round(mm / (0.5 * (sy + sx))))

    def _area_px(self, mm2: float) -> float:
        return mm2 / (self.spacing[1] * self.spacing[2])  # type: ignore[index]

    # -- prompts ---------------------------------------------------------------------------
    def _state(self, z: int) -> _SliceState:
        self._check_slice(z)
        if z not in self._slices:
            prior = self._pred[z].copy() if self._pred is not None else None
            if prior is None:
                prior = np.zeros(self.shape[1:], dtype=bool)  # type: ignore[index]
            self._slices[z] = _SliceState(base=prior)
        return self._slices[z]

    def _check_slice(self, z: int) -> None:
        if self._image is None:
            raise RuntimeError("set_volume must be called first")
        self.frame_position(int(z))

    def add_clicks(
        self, z: int, points: np.ndarray, labels: np.ndarray, replace: bool = False
    ) -> np.ndarray:
        """Clicks ``points`` (K, 2) (y, x) with ``labels`` (K,) 1/0 on slice ``z``; bool (Y, X)."""
        z = int(z)
        self._check_slice(z)
        pts, lab = self._clicks(points, labels)
        st = self._state(z)
        if replace:
            st.points, st.labels = [], []
        st.points += [(int(y), int(x)) for y, x in pts]
        st.labels += [int(bool(v)) for v in lab]
        return self._slice_mask(z)

    def add_box(self, z: int, box: tuple[int, int, int, int]) -> np.ndarray:
        """Box ``(y0, x0, y1, x1)`` inclusive on slice ``z``: it becomes the slice's base mask.

        The object is :func:`classical_ops.box_region`: the HU band typical of the box's middle
        rather than of the ring ``box_ring_mm`` wide around it, and the in-band components
        that best fill the box, holes filled, inside the box only. Earlier clicks on the slice
        are forgotten; later ones edit the box result.
        """
        z = int(z)
        self._check_slice(z)
        st = self._state(z)
        st.base, st.points, st.labels = self._box_base(z, box), [], []
        return self._slice_mask(z)

    def _clicks(self, points: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
        return ops.check_clicks(points, labels, self.shape[1:])  # type: ignore[index]

    def _box_base(self, z: int, box: tuple[int, int, int, int]) -> np.ndarray:
        """bool (Y, X) :func:`classical_ops.box_region` of inclusive box (y0, x0, y1, x1), clipped."""
        p = self.params
        return ops.box_region(
            self._image[z], ops.clip_box(box, self.shape[1:]), max(self._px(p.box_ring_mm), 1),  # type: ignore[index]
            self._px(p.open_mm), p.box_bandwidth_hu, p.box_band_floor,
        )

    def add_mask(self, z: int, mask: np.ndarray) -> np.ndarray:
        """Mask prompt bool ``(Y, X)`` on slice ``z``: taken as the slice's base mask as is."""
        z = int(z)
        self._check_slice(z)
        mask = np.asarray(mask)
        if mask.shape != tuple(self.shape[1:]):  # type: ignore[index]
            raise ValueError(f"mask shape {mask.shape} != slice shape {self.shape[1:]}")
        st = self._state(z)
        st.base, st.points, st.labels = mask.astype(bool), [], []
        return self._slice_mask(z)

    def predict_slice(self, z: int, points: np.ndarray | None = None, labels: np.ndarray | None = None,
                      box: tuple[int, int, int, int] | None = None) -> np.ndarray:
        """One-shot bool ``(Y, X)`` of slice ``z`` from a box and/or clicks alone, as if nothing
        else were prompted (no prior, no reach from other slices); every stored prompt and the
        last propagation are restored afterwards."""
        if box is None and (points is None or len(points) == 0):
            raise ValueError("predict_slice needs points or a box")
        return self._one_shot(z, lambda: self.add_box(z, box) if box is not None else None, points, labels)

    def predict_slice_masked(self, z: int, mask: np.ndarray, points: np.ndarray | None = None,
                             labels: np.ndarray | None = None) -> np.ndarray:
        """:meth:`predict_slice` from the mask prompt (the slice's base, as in :meth:`add_mask`) and clicks."""
        return self._one_shot(z, lambda: self.add_mask(z, mask), points, labels)

    def _one_shot(self, z: int, first: Any, points: np.ndarray | None, labels: np.ndarray | None) -> np.ndarray:
        """``first()`` then the clicks on slice ``z`` of a fresh object; prompts and track restored."""
        self._check_slice(int(z))
        saved, self._slices, self._pred = (self._slices, self._pred), {}, None
        try:
            out = first()
            return self.add_clicks(z, points, labels) if points is not None and len(points) else out
        finally:
            self._slices, self._pred = saved

    def _slice_mask(self, z: int) -> np.ndarray:
        """The mask of prompted slice ``z``: its base, plus positive regions, minus negatives."""
        st = self._slices[z]
        p = self.params
        img = self._image[z]  # type: ignore[index]
        pos = [pt for pt, lab in zip(st.points, st.labels) if lab == 1]
        neg = [pt for pt, lab in zip(st.points, st.labels) if lab == 0]
        mask = st.base.copy()
        window, open_r = self._px(p.click_window_mm), self._px(p.open_mm)
        reach = self._click_reach(z)
        for pt in pos:
            region = ops.click_region(
                img, pt, window, p.click_tolerance_hu, open_r, p.click_adapt_k,
                p.click_tolerance_max_hu, (p.soft_tissue_low_hu, p.soft_tissue_high_hu),
            )
            if reach is not None:
                region &= ops.disc(img.shape, pt, reach)
            mask |= region
        if neg:
            anchors = list(pos)
            if not anchors:
                # Only negative clicks here: the part of the base away from them stays.
                anchor = ops.deepest_away_from(mask, neg)
                anchors = [anchor] if anchor is not None else []
            mask = ops.cut_negative(mask, anchors, neg, p.neck_power)
        st.mask = mask
        return mask.copy()

    def _click_reach(self, z: int) -> float | None:
        """Radius (pixels) a positive click on ``z`` may reach, from the object's known size.

        The reference area is the largest predicted area on the frames next to ``z`` (from the
        last propagation), else the largest area of the other prompted slices; the reach is
        ``click_reach`` times the radius of a disc of that area. ``None`` (no limit) when the
        object has no known cross-section yet.
        """
        areas: list[int] = []
        if self._pred is not None:
            i = self.frame_position(z)
            near = self.frames[max(i - 1, 0) : i + 2]
            areas = [int(self._pred[int(f)].sum()) for f in near if int(f) != z]
        if not any(areas):
            areas = [int(st.mask.sum()) for o, st in self._slices.items() if o != z and st.mask is not None]
        ref = max(areas, default=0)
        if ref == 0 or self.params.click_reach <= 0:
            return None
        return self.params.click_reach * float(np.sqrt(ref / np.pi))

    # -- propagation -----------------------------------------------------------------------
    def _intensity_model(
        self, masks: dict[int, np.ndarray], around: int
    ) -> tuple[float, float, float, float] | None:
        """(lo, hi, level, allowed shift) HU of the object near slice ``around``; ``None`` if all masks empty.

        The model is local: it pools the prompted masks nearest to ``around`` (ties: lower z)
        until they hold ``model_min_mm2`` of area, so a prompt on an atypical slice (partial
        volume at an object's end) does not change how the object is tracked elsewhere.
        """
        order = sorted((z for z, m in masks.items() if m.any()), key=lambda z: (abs(z - around), z))
        if not order:
            return None
        p = self.params
        need = self._area_px(p.model_min_mm2)
        values: list[np.ndarray] = []
        used: list[int] = []
        for z in order:
            values.append(self._image[z][masks[z]])  # type: ignore[index]
            used.append(z)
            if sum(v.size for v in values) >= need:
                break
        v = np.concatenate(values)
        lo, hi = np.percentile(v, [p.range_low_pct, p.range_high_pct])
        lo, hi = float(lo - p.range_margin_hu), float(hi + p.range_margin_hu)
        level = float(np.median(v))
        if not p.soft_tissue_low_hu <= level <= p.soft_tissue_high_hu:
            # Textured tissue walled in by contrast (lung, bone): partial-volume pixels belong
            # to the object up to the midpoint between its level and its surroundings'.
            ring = self._surroundings(masks, used)
            if ring.size:
                mid = 0.5 * (level + float(np.median(ring)))
                lo, hi = (lo, max(hi, mid)) if mid > level else (min(lo, mid), hi)
        shift = max(p.max_mean_shift_hu, p.mean_shift_sd * float(v.std()))
        return lo, hi, level, shift

    def _surroundings(self, masks: dict[int, np.ndarray], slices: list[int]) -> np.ndarray:
        """HU just outside the masks of ``slices`` (a ring ``open_mm`` wide, at least 2 px)."""
        r = max(self._px(self.params.open_mm), 2)
        rings = [
            self._image[z][ops.dilate(masks[z], r) & ~masks[z]]  # type: ignore[index]
            for z in slices
        ]
        return np.concatenate(rings) if rings else np.zeros(0, np.float32)

    def _step(self, prev: np.ndarray, z: int, model: tuple[float, float, float, float]) -> np.ndarray | None:
        """Track ``prev`` onto slice ``z``; ``None`` when a stop rule fires."""
        p = self.params
        lo, hi, level, shift = model
        img = self._image[z]  # type: ignore[index]
        new, enclosed = ops.propagate_step(
            prev, img, lo, hi, self._grow_px(p.grow_mm), self._px(p.seed_mm),
            self._px(p.propagate_open_mm), self._grow_px(p.free_grow_mm),
        )
        area = int(new.sum())
        if area == 0 or area < self._area_px(p.min_area_mm2):
            return None
        # Growth and support judge the part whose border could not be told from its
        # surroundings; an enclosed component is bounded by contrast and exempt.
        rest = new & ~enclosed
        n_rest = int(rest.sum())
        if n_rest:
            if (rest & prev).sum() < p.min_support * n_rest:
                return None
            if n_rest > p.max_growth * max(int(prev.sum()), 1):
                return None
        if abs(float(np.median(img[new])) - level) > shift:
            return None
        return new

    def _grow_px(self, mm_per_mm: float) -> int:
        """Pixels (at least 1) the border may move between neighbouring slices, for a
        movement of ``mm_per_mm`` mm in-plane per mm of slice spacing."""
        return max(self._px(mm_per_mm * float(self.spacing[0])), 1)  # type: ignore[index]

    def _chain(self, start: np.ndarray, positions: range, model: tuple[float, float, float, float]) -> dict[int, np.ndarray]:
        """Track ``start`` frame by frame over frame ``positions``; stops at the first failure."""
        out: dict[int, np.ndarray] = {}
        prev = start
        for i in positions:
            if not prev.any():
                break
            z = int(self.frames[i])
            nxt = self._step(prev, z, model)
            if nxt is None:
                break
            out[i] = prev = nxt
        return out

    def propagate(self) -> np.ndarray:
        """Bool (Z, Y, X) prediction from every prompt so far (SAM2's pass order).

        Forward from the earliest prompted frame to the last frame, backward from it to the
        first; every prompted frame keeps its mask and restarts tracking. A frame between two
        prompted frames is conditioned by both, as SAM2's memory holds every prompted frame:
        it takes the union of the tracks arriving from each side.
        """
        if self._image is None:
            raise RuntimeError("set_volume must be called first")
        pred = np.zeros(self.shape, dtype=bool)  # type: ignore[arg-type]
        masks = {z: st.mask for z, st in sorted(self._slices.items()) if st.mask is not None}
        frames = self.frames
        pos = [int(np.searchsorted(frames, z)) for z in masks]
        for z, m in masks.items():
            pred[z] = m
        for k, i in enumerate(pos):
            m = masks[int(frames[i])]
            model = self._intensity_model(masks, int(frames[i]))
            if model is not None:
                nxt = pos[k + 1] if k + 1 < len(pos) else frames.size
                for j, t in self._chain(m, range(i + 1, nxt), model).items():
                    pred[frames[j]] |= t
                low = pos[k - 1] if k > 0 else -1
                for j, t in self._chain(m, range(i - 1, low, -1), model).items():
                    pred[frames[j]] |= t
        self._pred = pred
        return pred.copy()
