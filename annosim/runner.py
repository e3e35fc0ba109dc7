"""Running protocols over cases: objects x settings x protocols, metrics per round, and the
resumable results folder (DESIGN sections 1, 4, 6)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from annosim.data.case import Case
from annosim.errors import AnnosimError
from annosim.metrics import round_metrics
from annosim.protocols.base import Protocol, RoundOutcome, begin_object, propagate_in_frames

SETTINGS: tuple[str, ...] = ("full", "fg-only")

RoundCallback = Callable[[int, str, RoundOutcome], None]


def object_rng(seed: int, case: str, label: int, setting: str) -> np.random.Generator:
    """The random stream of one object in one setting, from a stable hash (never ``hash()``)."""
    key = f"{int(seed)}|{case}|{int(label)}|{setting}".encode("utf-8")
    return np.random.default_rng(int.from_bytes(hashlib.sha256(key).digest()[:8], "little"))


def setting_frames(gt: np.ndarray, setting: str) -> np.ndarray | None:
    """Slice indices of an object's video: ``None`` (all) for ``full``, the truth's slices for
    ``fg-only`` (increasing, not necessarily contiguous)."""
    if setting == "full":
        return None
    if setting == "fg-only":
        return np.flatnonzero(gt.any(axis=(1, 2)))
    raise ValueError(f"unknown setting {setting!r}; expected one of {SETTINGS}")


def resolve_labels(case: Case, requested: Sequence[str | int] | None) -> tuple[list[int], list[str]]:
    """Label values to evaluate and messages for requested labels that are absent.

    ``requested`` holds names or values; ``None`` means every label present in the case.
    """
    present = case.present_labels()
    if not requested:
        return present, []
    by_name = {name: value for value, name in case.label_names.items()}
    values: list[int] = []
    problems: list[str] = []
    source = case.sources.get("label", case.case_id)
    for item in requested:
        token = str(item).strip()
        if token.lstrip("-").isdigit():
            value = int(token)
        elif token in by_name:
            value = by_name[token]
        else:
            problems.append(f"{source}: label {token!r} is not among the label names")
            continue
        if value not in present:
            problems.append(f"{source}: label {token!r} (value {value}) is absent from this case")
        elif value not in values:
            values.append(value)
    return values, problems


@dataclass
class UnitResult:
    """Rows and prompts of one (case, label, setting, protocol), or the error that stopped it."""

    case: str
    label: int
    setting: str
    protocol: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    prompts: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    stage: str = "protocol"


class PromptFree(Protocol):
    """One round from ``propagate()`` with no prompt, for models with ``prompt_free = True``
    (e.g. VISTA3D in automatic mode)."""

    def __init__(self, wrapped: Protocol) -> None:
        self.name = wrapped.name

    def run_object(self, model, gt, frames, rng):  # type: ignore[override]
        call, fm, _ = begin_object(model, gt, frames)
        pred = propagate_in_frames(call, fm)
        yield RoundOutcome(1, pred, [], 0, 0, call.lap())


def run_unit(
    case: Case,
    model: Any,
    protocol: Protocol,
    label: int,
    setting: str,
    *,
    seed: int = 0,
    nsd_tolerance: float = 2.0,
    surface_metrics: bool = True,
    on_round: RoundCallback | None = None,
) -> UnitResult:
    """Drive ``model`` with ``protocol`` on one object in one setting; metrics per round.

    ``model.set_volume`` must have been called with this case. Metrics of a ``fg-only`` row
    cover the object's slices only (the prediction is empty elsewhere by construction).
    """
    gt = case.label == label
    frames = setting_frames(gt, setting)
    result = UnitResult(case.case_id, int(label), setting, protocol.name)
    if hasattr(model, "set_target"):
        model.set_target(int(label), case.name_of(label))
    proto = PromptFree(protocol) if getattr(model, "prompt_free", False) else protocol
    rng = object_rng(seed, case.case_id, label, setting)
    for outcome in proto.run_object(model, gt, frames, rng):
        m = round_metrics(outcome.prediction, gt, case.spacing, nsd_tolerance, surface=surface_metrics)
        result.rows.append(
            {
                "case": case.case_id,
                "label": int(label),
                "label_name": case.name_of(label),
                "setting": setting,
                "protocol": protocol.name,
                "round": outcome.round,
                "annotated_slices": outcome.annotated_slices,
                "clicks": outcome.clicks,
                "dice": float(m["dice"]),
                "nsd": float(m["nsd"]),
                "hd95": float(m["hd95"]),
                "fp_slices": int(m["fp_slices"]),
                "gt_slices": int(m["gt_slices"]),
                "model_seconds": float(outcome.model_seconds),
            }
        )
        base = {
            "case": case.case_id,
            "label": int(label),
            "setting": setting,
            "protocol": protocol.name,
            "round": outcome.round,
        }
        result.prompts.extend({**base, **p.to_record()} for p in outcome.prompts)
        if on_round is not None:
            on_round(int(label), setting, outcome)
    return result


def iter_case_units(
    case: Case,
    model: Any,
    protocols: Sequence[Protocol],
    *,
    settings: Sequence[str] = SETTINGS,
    labels: Sequence[int],
    seed: int = 0,
    nsd_tolerance: float = 2.0,
    surface_metrics: bool = True,
    skip: Callable[[int, str, str], bool] = lambda label, setting, protocol: False,
    on_round: RoundCallback | None = None,
) -> Iterator[UnitResult]:
    """Every unit of one case, in a fixed order (protocol, label, setting); failed units are
    returned with ``error`` set instead of stopping the others."""
    model.set_volume(case.image, case.spacing)
    for protocol in protocols:
        if hasattr(model, "configure_protocol"):
            model.configure_protocol(**protocol.model_options)
        for label in labels:
            for setting in settings:
                if skip(label, setting, protocol.name):
                    continue
                try:
                    yield run_unit(
                        case,
                        model,
                        protocol,
                        label,
                        setting,
                        seed=seed,
                        nsd_tolerance=nsd_tolerance,
                        surface_metrics=surface_metrics,
                        on_round=on_round,
                    )
                except (AnnosimError, ValueError, RuntimeError, NotImplementedError, MemoryError) as exc:
                    yield UnitResult(
                        case.case_id,
                        int(label),
                        setting,
                        protocol.name,
                        error=f"{type(exc).__name__}: {exc}" if not isinstance(exc, AnnosimError) else str(exc),
                        stage="model" if isinstance(exc, (RuntimeError, NotImplementedError, MemoryError)) else "protocol",
                    )


@dataclass
class CaseResult:
    """All rows and prompts of one case (see :func:`evaluate_case`)."""

    rows: list[dict[str, Any]]
    prompts: list[dict[str, Any]]
    errors: list[dict[str, Any]]


def evaluate_case(
    case: Case,
    model: Any,
    protocol: Protocol | str = "he2024",
    *,
    settings: Sequence[str] = SETTINGS,
    labels: Sequence[int | str] | None = None,
    seed: int = 0,
    nsd_tolerance: float = 2.0,
    surface_metrics: bool = True,
    on_round: RoundCallback | None = None,
) -> CaseResult:
    """Run one protocol (or several, given a list) on one case in memory; no files written."""
    from annosim.protocols.registry import get_protocol

    protos: list[Protocol] = []
    for p in protocol if isinstance(protocol, (list, tuple)) else [protocol]:
        protos.append(get_protocol(p) if isinstance(p, str) else p)
    values, problems = resolve_labels(case, labels)
    errors = [{"case": case.case_id, "label": None, "stage": "labels", "error": msg} for msg in problems]
    rows: list[dict[str, Any]] = []
    prompts: list[dict[str, Any]] = []
    for unit in iter_case_units(
        case,
        model,
        protos,
        settings=settings,
        labels=values,
        seed=seed,
        nsd_tolerance=nsd_tolerance,
        surface_metrics=surface_metrics,
        on_round=on_round,
    ):
        if unit.error:
            errors.append({"case": unit.case, "label": unit.label, "stage": unit.stage, "error": unit.error})
        rows.extend(unit.rows)
        prompts.extend(unit.prompts)
    return CaseResult(rows, prompts, errors)


def best_of_rounds(rows: Iterable[dict[str, Any]]) -> dict[tuple[str, int, str, str], float]:
    """Best Dice over rounds per (case, label, setting, protocol)."""
    best: dict[tuple[str, int, str, str], float] = {}
    for r in rows:
        key = (str(r["case"]), int(r["label"]), str(r["setting"]), str(r["protocol"]))
        best[key] = max(best.get(key, -1.0), float(r["dice"]))
    return best
