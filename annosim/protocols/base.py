"""Types shared by every protocol: prompts, per-round outcomes, the protocol interface."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

from annosim.errors import ConfigError
from annosim.models.base import SliceModel


@dataclass(frozen=True)
class Prompt:
    """One prompt given to the model, as written to ``prompts.jsonl``.

    ``kind`` is ``"point"`` (with ``y, x, positive``), ``"box"`` (with ``box = (y0, x0, y1, x1)``)
    or ``"mask"``; ``z`` is the slice (volume axis 0 index).
    """

    kind: str
    z: int
    y: int | None = None
    x: int | None = None
    positive: bool | None = None
    box: tuple[int, int, int, int] | None = None

    def to_record(self) -> dict[str, Any]:
        """JSON-able fields of the README's "Results folder" (without case/label/setting/round)."""
        rec: dict[str, Any] = {"kind": self.kind, "z": int(self.z)}
        if self.kind == "point":
            rec.update(y=int(self.y), x=int(self.x), positive=bool(self.positive))  # type: ignore[arg-type]
        elif self.kind == "box":
            y0, x0, y1, x1 = self.box  # type: ignore[misc]
            rec.update(y0=int(y0), x0=int(x0), y1=int(y1), x1=int(x1))
        return rec


@dataclass
class RoundOutcome:
    """What one round of a protocol produced.

    Attributes
    ----------
    round : int
        1-based round number.
    prediction : ndarray of bool, shape (Z, Y, X)
        The whole-volume prediction after this round's propagation.
    prompts : list of Prompt
        Prompts given in this round, in order.
    annotated_slices : int
        Distinct slices prompted so far (a slice picked twice counts once).
    clicks : int
        Clicks that reached the model so far (cumulative).
    model_seconds : float
        Wall time spent inside model calls during this round.
    scored_frames : ndarray of bool or float, shape (Z,), or None
        The frames the protocol's source scores, for its native metrics (``None``: the
        setting's frames); float: the source's per-frame weights (> 0 where scored).
    patch : tuple of two bool arrays, or None
        A patch protocol's ``(prediction, truth)`` on the model's patch (the crop its source
        scores), for native crop metrics; ``None`` for other protocols.
    """

    round: int
    prediction: np.ndarray
    prompts: list[Prompt] = field(default_factory=list)
    annotated_slices: int = 0
    clicks: int = 0
    model_seconds: float = 0.0
    scored_frames: np.ndarray | None = None
    patch: tuple[np.ndarray, np.ndarray] | None = None


class ModelCallError(Exception):
    """An exception raised inside a model method that a protocol called: the engine records it
    at stage ``model`` (whatever its type), not ``protocol``. ``cause`` is the original."""

    def __init__(self, method: str, cause: BaseException) -> None:
        self.method = method
        self.cause = cause
        super().__init__(f"{method}: {describe_exception(cause)}")


def describe_exception(exc: BaseException) -> str:
    """One line for an exception: an annosim error's own message, else ``Type: message``."""
    from annosim.errors import AnnosimError

    text = " ".join(str(exc).split())
    return text if isinstance(exc, AnnosimError) else f"{type(exc).__name__}: {text}"


class ModelTimer:
    """Wraps a model and accumulates the wall time of its calls (``seconds``); an exception
    raised inside the model comes out as :class:`ModelCallError`."""

    def __init__(self, model: SliceModel) -> None:
        self.model = model
        self.seconds = 0.0

    def __call__(self, method: str, *args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return getattr(self.model, method)(*args, **kwargs)
        except Exception as exc:
            raise ModelCallError(method, exc) from exc
        finally:
            self.seconds += time.perf_counter() - t0

    def lap(self) -> float:
        """Seconds since the last lap (and reset)."""
        s, self.seconds = self.seconds, 0.0
        return s


def frame_mask(n_slices: int, frames: np.ndarray | None) -> np.ndarray:
    """bool ``(Z,)``: True on the setting's frames (all slices when ``frames`` is None)."""
    out = np.zeros(int(n_slices), dtype=bool)
    out[np.arange(n_slices) if frames is None else np.asarray(frames, dtype=np.int64)] = True
    return out


def begin_object(
    model: SliceModel, gt: np.ndarray, frames: np.ndarray | None
) -> tuple[ModelTimer, np.ndarray, np.ndarray]:
    """Start one object: ``model.start_object(frames)`` through a timer.

    Returns ``(call, fm, g)``: the timed model, the frame mask bool ``(Z,)`` and the truth
    restricted to the frames, bool ``(Z, Y, X)``.
    """
    fm = frame_mask(gt.shape[0], frames)
    g = np.asarray(gt, dtype=bool) & fm[:, None, None]
    call = ModelTimer(model)
    call("start_object", frames)
    return call, fm, g


def propagate_in_frames(call: ModelTimer, fm: np.ndarray) -> np.ndarray:
    """``model.propagate()`` as bool ``(Z, Y, X)``, slices outside the bool ``(Z,)`` ``fm``
    forced empty (the contract says they are; this enforces it)."""
    pred = np.asarray(call("propagate"), dtype=bool)
    return pred if fm.all() else pred & fm[:, None, None]


#: Model method each prompt kind needs.
PROMPT_METHODS: dict[str, str] = {"point": "add_clicks", "box": "add_box", "mask": "add_mask",
                                  "slice2d": "predict_slice", "slice2d-mask": "predict_slice_masked",
                                  "patch": "predict_patch"}


class Protocol:
    """A simulated annotator. Subclasses set :attr:`name`, :attr:`params_class` (a frozen
    dataclass whose defaults match the source) and :attr:`prompt_kinds`, and implement
    :meth:`run_object` and :attr:`max_rounds`.

    ``orientation`` names the orientation the protocol requires (``None``: the user's choice);
    ``model_options`` are passed to ``model.configure_protocol`` before the protocol runs.
    """

    name: str = "protocol"
    params_class: type | None = None
    orientation: str | None = None
    #: The protocol cannot run in another orientation (``--orientation`` other than
    #: :attr:`orientation` is refused), e.g. a patch protocol that reorders canonical axes to RAS.
    orientation_fixed: bool = False
    model_options: dict[str, Any] = {}
    #: Prompt kinds the protocol gives (keys of :data:`PROMPT_METHODS`).
    prompt_kinds: tuple[str, ...] = ("point",)
    #: The source's own metrics (names in :data:`annosim.metrics.native.NATIVE`), written beside
    #: annosim's common ones.
    native_metrics: tuple[str, ...] = ()
    #: The source's object-level statistics (names in
    #: :data:`annosim.metrics.native_object.OBJECT_NATIVE`), computed by the report.
    native_object_metrics: tuple[str, ...] = ()
    #: The source's headline number (a name of ``native_object_metrics`` or ``native_metrics``,
    #: the latter taken at the final round), shown beside annosim's Dice in the sensitivity table.
    native_headline: str = ""

    def __init__(self, params: Any = None) -> None:
        if self.params_class is not None:
            self.params = params if params is not None else self.params_class()

    @classmethod
    def from_overrides(cls, overrides: dict[str, Any]) -> "Protocol":
        """The protocol with ``overrides`` (strings from ``--protocol-arg`` are converted) applied
        to the defaults of :attr:`params_class`."""
        from annosim.params import coerce_overrides

        if cls.params_class is None:
            if overrides:
                raise ConfigError(f"protocol {cls.name!r} has no parameters")
            return cls()
        return cls(cls.params_class(**coerce_overrides(cls.params_class, overrides)))

    @property
    def requires(self) -> tuple[str, ...]:
        """Model methods the protocol calls beyond the required ones (checked before a run)."""
        return tuple(dict.fromkeys(PROMPT_METHODS[k] for k in self.prompt_kinds)) + ("propagate",)

    @property
    def max_rounds(self) -> int:
        """The most rounds one object can have under these parameters (written to run.json,
        read by the report to carry early-stopped objects forward)."""
        return 1

    def describe(self) -> dict[str, Any]:
        """Name, rounds and parameters (the dataclass in ``self.params``), recorded in run.json."""
        out: dict[str, Any] = {"name": self.name, "max_rounds": int(self.max_rounds)}
        if self.native_metrics:
            out["native_metrics"] = list(self.native_metrics)
        params = getattr(self, "params", None)
        if dataclasses.is_dataclass(params) and not isinstance(params, type):
            out["params"] = dataclasses.asdict(params)
        return out

    def run_object(
        self,
        model: SliceModel,
        gt: np.ndarray,
        frames: np.ndarray | None,
        rng: np.random.Generator,
    ) -> Iterator[RoundOutcome]:
        """Drive ``model`` on one object with truth ``gt`` (bool (Z, Y, X)) in one setting.

        ``frames`` are the setting's slice indices (``None`` = all). ``model.set_volume`` has been
        called; the protocol calls ``model.start_object(frames)`` itself. Yields one outcome per
        round; stops early when the protocol's rules say so.
        """
        raise NotImplementedError
