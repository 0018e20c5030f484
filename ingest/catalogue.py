"""The signal catalogue: the COVESA VSS release shipped in ``ingest/vss/`` plus overlays.

Every leaf of the pinned VSS release is a signal the bridge accepts, with the datatype, unit,
min/max and allowed values the spec gives it. A deployment adds its private signals (or
narrows standard ones) with VSS overlay files named in ``OWNERCARE_VSS_OVERLAYS``: YAML
mappings of full dotted paths to node definitions, as vss-tools reads them (``type``,
``datatype``, ``unit``, ``min``, ``max``, ``allowed``, ``description``; ``delete: true``
removes a node). Nothing here does I/O except reading those files when asked to.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Any, Final


class SignalType(StrEnum):
    FLOAT = "float"
    INT = "int"
    BOOL = "bool"
    ENUM = "enum"
    STRING = "string"
    FLOAT_LIST = "float_list"
    INT_LIST = "int_list"
    STRING_LIST = "string_list"


LIST_TYPES: Final = frozenset({SignalType.FLOAT_LIST, SignalType.INT_LIST,
                               SignalType.STRING_LIST})
NUMERIC_TYPES: Final = frozenset({SignalType.FLOAT, SignalType.INT})


@dataclass(frozen=True, slots=True)
class Signal:
    path: str
    type: SignalType
    unit: str | None = None
    min: float | None = None
    max: float | None = None
    allowed: frozenset[str] | None = None
    max_len: int | None = None
    description: str = ""
    datatype: str = ""  # the VSS datatype (uint16, float[], ...)
    private: bool = False  # from an overlay, not the VSS release


_INT_RANGES: Final[Mapping[str, tuple[int, int]]] = {
    f"{sign}int{bits}": ((0, 2**bits - 1) if sign else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1))
    for sign in ("", "u") for bits in (8, 16, 32, 64)
}
STRING_MAX_LEN: Final = 256  # VSS strings have no length; a device string longer is a fault
LIST_MAX_LEN: Final = 1000  # a 1000-cell pack is the largest array a car reports
_DATATYPES: Final = frozenset({"float", "double", "boolean", "string", *_INT_RANGES})
_NODE_TYPES: Final = frozenset({"sensor", "actuator", "attribute"})
_OVERLAY_KEYS: Final = frozenset({"type", "datatype", "unit", "min", "max", "allowed",
                                  "description", "comment", "delete", "deprecation", "default",
                                  "pattern"})
MAX_PATH_LEN: Final = 160  # what the views store (latest_signals.path)
PATH_RE: Final = re.compile(r"[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z0-9_]+){1,15}")

# ownercare's plausibility bounds: the spec leaves most ranges open, but a 12 V battery at
# 1e9 V or a tyre at 5 MPa is a broken sensor, and the detectors that read these must not see
# it. Each narrows the spec's own range (the narrower bound of the two wins).
_WHEELS: Final = tuple(
    f"Vehicle.Chassis.Axle.Row{row}.Wheel.{side}" for row in (1, 2) for side in ("Left", "Right")
)
_BATTERY: Final = "Vehicle.Powertrain.TractionBattery"
PLAUSIBLE: Final[Mapping[str, tuple[float, float]]] = {
    "Vehicle.Speed": (0, 400),
    "Vehicle.LowVoltageBattery.CurrentVoltage": (0, 20),
    "Vehicle.LowVoltageBattery.CurrentCurrent": (-1000, 1000),
    f"{_BATTERY}.CurrentVoltage": (0, 1200),
    f"{_BATTERY}.CurrentCurrent": (-2000, 2000),
    f"{_BATTERY}.CurrentPower": (-1_000_000, 1_000_000),
    f"{_BATTERY}.CellVoltage.Min": (0, 5),
    f"{_BATTERY}.CellVoltage.Max": (0, 5),
    f"{_BATTERY}.CellVoltage.CellVoltages": (0, 5),
    f"{_BATTERY}.CellVoltage.IdMin": (0, LIST_MAX_LEN),
    f"{_BATTERY}.CellVoltage.IdMax": (0, LIST_MAX_LEN),
    f"{_BATTERY}.Temperature.Average": (-60, 120),
    f"{_BATTERY}.Temperature.Min": (-60, 120),
    f"{_BATTERY}.Temperature.Max": (-60, 120),
    "Vehicle.Powertrain.ElectricMotor.EngineCoolant.Temperature": (-60, 150),
    "Vehicle.Powertrain.ElectricMotor.Power": (-1000, 1000),
    "Vehicle.Powertrain.CombustionEngine.EngineCoolant.Temperature": (-60, 150),
    "Vehicle.Powertrain.CombustionEngine.Speed": (0, 20000),
    "Vehicle.Exterior.AirTemperature": (-60, 70),
    **{f"{w}.Tire.Pressure": (0, 1000) for w in _WHEELS},
    **{f"{w}.Tire.Temperature": (-60, 200) for w in _WHEELS},
}


class OverlayError(ValueError):
    """An overlay file that cannot be applied; str() names the file, the node and why."""


@dataclass(frozen=True, slots=True)
class Catalogue:
    release: str
    signals: Mapping[str, Signal]
    overlays: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.signals)


def _signal(path: str, node: Mapping[str, Any], *, private: bool) -> Signal:
    """A catalogue entry from a VSS node definition; ValueError naming what is wrong."""
    datatype = node.get("datatype")
    if not isinstance(datatype, str):
        raise ValueError("a signal needs a datatype")
    element = datatype.removesuffix("[]")
    if element not in _DATATYPES:
        raise ValueError(f"datatype {datatype!r} is not a VSS primitive type")
    is_list = datatype.endswith("[]")
    allowed_raw = node.get("allowed")
    allowed = None
    if allowed_raw is not None:
        if not isinstance(allowed_raw, list) or not all(isinstance(a, str) for a in allowed_raw):
            raise ValueError("allowed must be a list of strings (quote values such as 'ON' "
                             "and 'OFF', which YAML reads as booleans)")
        allowed = frozenset(allowed_raw)
    lo, hi = node.get("min"), node.get("max")
    for name, bound in (("min", lo), ("max", hi)):
        if bound is not None and (not isinstance(bound, int | float) or isinstance(bound, bool)):
            raise ValueError(f"{name} must be a number")
    if element in _INT_RANGES:
        type_lo, type_hi = _INT_RANGES[element]
        lo = type_lo if lo is None else max(lo, type_lo)
        hi = type_hi if hi is None else min(hi, type_hi)
    if path in PLAUSIBLE:
        p_lo, p_hi = PLAUSIBLE[path]
        lo = p_lo if lo is None else max(lo, p_lo)
        hi = p_hi if hi is None else min(hi, p_hi)
    if lo is not None and hi is not None and lo > hi:
        raise ValueError(f"min {lo} is above max {hi}")
    if element in ("float", "double"):
        kind = SignalType.FLOAT_LIST if is_list else SignalType.FLOAT
    elif element in _INT_RANGES:
        kind = SignalType.INT_LIST if is_list else SignalType.INT
    elif element == "boolean":
        if is_list:
            raise ValueError("boolean[] is not supported")
        kind = SignalType.BOOL
    elif is_list:
        kind = SignalType.STRING_LIST
    else:
        kind = SignalType.ENUM if allowed is not None else SignalType.STRING
    unit = node.get("unit")
    return Signal(path, kind, unit if isinstance(unit, str) else None,
                  lo, hi, allowed, LIST_MAX_LEN if is_list else STRING_MAX_LEN,
                  str(node.get("description", "")), datatype, private)


def _load_release() -> tuple[str, dict[str, Signal]]:
    raw = json.loads(resources.files("ingest").joinpath("vss/vss.json").read_bytes())
    return raw["release"], {path: _signal(path, node, private=False)
                            for path, node in raw["signals"].items()}


def _apply_overlay(signals: dict[str, Signal], name: str, text: str) -> None:
    import yaml

    if re.search(r"^\s*#include\b", text, re.MULTILINE):
        raise OverlayError(f"overlay {name}: #include is not supported; list every file in "
                           "OWNERCARE_VSS_OVERLAYS")
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise OverlayError(f"overlay {name}: not valid YAML ({str(exc).splitlines()[0]})"
                           ) from None
    if doc is None:
        return
    if not isinstance(doc, dict):
        raise OverlayError(f"overlay {name}: must be a mapping of VSS paths to nodes")
    for path, node in doc.items():
        where = f"overlay {name}: node {path!r}"
        if not isinstance(path, str) or not PATH_RE.fullmatch(path):
            raise OverlayError(f"{where}: not a full dotted VSS path (e.g. Vehicle.Acme.Foo)")
        if len(path) > MAX_PATH_LEN:
            raise OverlayError(f"{where}: longer than {MAX_PATH_LEN} characters")
        if not isinstance(node, dict):
            raise OverlayError(f"{where}: must be a mapping (type, datatype, unit, ...)")
        unknown = sorted(set(node) - _OVERLAY_KEYS)
        if unknown:
            raise OverlayError(f"{where}: unknown key(s) {', '.join(map(str, unknown))}"
                               " (instances are not supported: write each path)")
        if node.get("delete") is True:
            for key in [p for p in signals if p == path or p.startswith(path + ".")]:
                del signals[key]
            continue
        node_type = node.get("type")
        if node_type == "branch":
            continue
        current = signals.get(path)
        if current is None and node_type not in _NODE_TYPES:
            raise OverlayError(f"{where}: a new signal needs type sensor, actuator or "
                               "attribute")
        if current is not None:
            base: dict[str, Any] = {"datatype": current.datatype, "unit": current.unit,
                                    "description": current.description}
            if current.allowed is not None:
                base["allowed"] = sorted(current.allowed)
            if "datatype" not in node:  # min/max of an integer type are the type's own
                base["min"], base["max"] = current.min, current.max
            node = {**base, **node}
        try:
            signals[path] = _signal(path, node, private=current is None or current.private)
        except ValueError as exc:
            raise OverlayError(f"{where}: {exc}") from None


def load_catalogue(overlays: Iterable[str | Path] = ()) -> Catalogue:
    """The pinned VSS release with ``overlays`` applied in order; OverlayError if one is bad."""
    release, signals = _load_release()
    names = []
    for overlay in overlays:
        path = Path(overlay)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise OverlayError(f"overlay {path}: cannot be read ({exc})") from None
        _apply_overlay(signals, str(path), text)
        names.append(str(path))
    return Catalogue(release, signals, tuple(names))


def with_signals(catalogue: Catalogue, extra: Iterable[Signal]) -> Catalogue:
    """``catalogue`` plus ``extra`` signals (tests and tools that need a private one)."""
    signals = dict(catalogue.signals)
    for signal in extra:
        signals[signal.path] = replace(signal, private=True)
    return Catalogue(catalogue.release, signals, catalogue.overlays)
