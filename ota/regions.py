"""Named regions for OTA targeting: areas on the map, and which cars are in them.

A car maker releases by market (type approval, radio bands, languages, a regulator's recall
order are per country) and stages rollouts by geography (one country first, away from a
holiday, where the service network is ready). Ownercare has no market attribute in its
telemetry, but it has every car's position, so the operator defines the markets as areas:

* a **region** has a name (``[A-Za-z0-9][A-Za-z0-9_.-]{0,63}``, e.g. ``norway`` or
  ``eu-north``), an optional description, and one or more areas in WGS84 degrees:
  **boxes** ``{min_lat, min_lon, max_lat, max_lon}`` (a box with ``min_lon > max_lon``
  crosses the antimeridian, as a GeoJSON bbox does) and **polygons**, rings of
  ``[lat, lon]`` points (at least three distinct points, closed or not, not crossing
  themselves, no edge spanning more than 180 degrees of longitude - split such an area in two;
  at most 1000 points a polygon and 5000 a region: simplify a coastline before);
* a car is **in** a region when its last known position (``Vehicle.CurrentLocation.Latitude``
  / ``Longitude`` in the latest values) lies in any of the region's areas, the boundary
  included;
* a car whose position is unknown (never reported, not numbers, or off the globe) is in no
  region: a campaign that names regions does **not** target it and says so (reason
  ``location_unknown``), instead of guessing its market. A position is used however old it
  is, because a parked car reports no position, and its time goes into the report.

Everything here is pure data and geometry; ``storage.ota`` reads positions and stores regions.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np

NAME_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
MAX_AREAS: Final = 200
MAX_POLYGON_POINTS: Final = 1000
MAX_REGION_POINTS: Final = 5000  # validating a polygon costs ~0.25 s per 1000 points
LOCATION_UNKNOWN: Final = "location_unknown"
OUTSIDE_REGIONS: Final = "outside_regions"

Point = tuple[float, float]  # (lat, lon), WGS84 degrees


def _coordinate(value: object, what: str, limit: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{what} must be a number, got {value!r}")
    number = float(value)
    if not -limit <= number <= limit:  # also refuses NaN
        raise ValueError(f"{what} {number} is outside [-{limit:g}, {limit:g}]")
    return number


def latitude(value: object, what: str = "latitude") -> float:
    return _coordinate(value, what, 90.0)


def longitude(value: object, what: str = "longitude") -> float:
    return _coordinate(value, what, 180.0)


@dataclass(frozen=True, slots=True)
class Box:
    """A latitude/longitude box; ``min_lon > max_lon`` wraps across the antimeridian."""

    min_lat: float
    min_lon: float
    max_lat: float
    max_lon: float

    def __post_init__(self) -> None:
        for name in ("min_lat", "max_lat"):
            latitude(getattr(self, name), name)
        for name in ("min_lon", "max_lon"):
            longitude(getattr(self, name), name)
        if self.min_lat >= self.max_lat:
            raise ValueError(f"box min_lat {self.min_lat} must be below max_lat "
                             f"{self.max_lat}")
        if self.min_lon == self.max_lon:
            raise ValueError(f"box min_lon and max_lon are both {self.min_lon}: no area")

    def contains(self, lat: float, lon: float) -> bool:
        if not self.min_lat <= lat <= self.max_lat:
            return False
        if self.min_lon <= self.max_lon:
            return self.min_lon <= lon <= self.max_lon
        return lon >= self.min_lon or lon <= self.max_lon  # across the antimeridian


EPS = 1e-12  # degrees squared: collinearity tolerance of the orientation tests
Coords = np.ndarray | float  # one coordinate or an array of them (np.float64 is a float)


def _orientation(ax: Coords, ay: Coords, bx: Coords, by: Coords, cx: Coords, cy: Coords
                 ) -> np.ndarray:
    """Twice the signed area of (a, b, c), elementwise: > 0 left turn, 0 collinear."""
    return np.asarray((bx - ax) * (cy - ay) - (by - ay) * (cx - ax))


def _within(px: Coords, py: Coords, ax: Coords, ay: Coords, bx: Coords, by: Coords
            ) -> np.ndarray:
    """p (collinear with a-b) lies between a and b."""
    return np.asarray((np.minimum(ax, bx) <= px) & (px <= np.maximum(ax, bx))
                      & (np.minimum(ay, by) <= py) & (py <= np.maximum(ay, by)))


@dataclass(frozen=True, slots=True)
class Polygon:
    """A simple polygon of (lat, lon) points; the ring closes itself.

    The geometry is planar in degrees, which is what a map drawn in latitude/longitude shows;
    regions are administrative areas, not navigation, so that is the right reading."""

    points: tuple[Point, ...]
    # Edge arrays (start and end latitude / longitude) and the bounding box, for speed.
    _edges: tuple[np.ndarray, ...] = field(default=(), init=False, repr=False, compare=False)
    _bounds: tuple[float, float, float, float] = field(default=(0.0, 0.0, 0.0, 0.0),
                                                       init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        points = self.points
        if len(points) > 1 and points[0] == points[-1]:
            points = points[:-1]  # a closed ring (GeoJSON style): drop the repeated point
            object.__setattr__(self, "points", points)
        if len(set(points)) < 3 or len(set(points)) != len(points):
            raise ValueError("a polygon needs at least three distinct points and no point "
                             "twice")
        if len(points) > MAX_POLYGON_POINTS:
            raise ValueError(f"a polygon may have at most {MAX_POLYGON_POINTS} points")
        for i, (lat, lon) in enumerate(points):
            latitude(lat, f"point {i} latitude")
            longitude(lon, f"point {i} longitude")
        ring = np.array(points, dtype=float)
        ax, ay = ring[:, 0], ring[:, 1]
        bx, by = np.roll(ax, -1), np.roll(ay, -1)
        object.__setattr__(self, "_edges", (ax, ay, bx, by))
        object.__setattr__(self, "_bounds", (float(ax.min()), float(ax.max()),
                                             float(ay.min()), float(ay.max())))
        wide = np.flatnonzero(np.abs(ay - by) > 180)
        if wide.size:
            raise ValueError(f"edge {wide[0]} spans more than 180 degrees of longitude; "
                             "split an area across the antimeridian in two")
        crossing = self._first_crossing()
        if crossing is not None:
            raise ValueError(f"the polygon crosses itself (edges {crossing[0]} and "
                             f"{crossing[1]})")
        if abs(float(np.sum(ax * by - ay * bx))) <= EPS:  # shoelace: twice the area
            raise ValueError("the polygon encloses no area")

    def _first_crossing(self) -> tuple[int, int] | None:
        """Two non-neighbouring edges that touch or cross, if any (one vectorised row of
        the edge-pair matrix per edge)."""
        ax, ay, bx, by = self._edges
        n = len(ax)
        for i in range(n - 2):
            j = np.arange(i + 2, n if i else n - 1)  # edge 0 and edge n-1 are neighbours
            if not j.size:
                continue
            cx, cy, dx, dy = ax[j], ay[j], bx[j], by[j]
            o1 = _orientation(ax[i], ay[i], bx[i], by[i], cx, cy)
            o2 = _orientation(ax[i], ay[i], bx[i], by[i], dx, dy)
            o3 = _orientation(cx, cy, dx, dy, ax[i], ay[i])
            o4 = _orientation(cx, cy, dx, dy, bx[i], by[i])
            proper = (o1 * o2 < 0) & (o3 * o4 < 0)
            touching = (
                ((np.abs(o1) <= EPS) & _within(cx, cy, ax[i], ay[i], bx[i], by[i]))
                | ((np.abs(o2) <= EPS) & _within(dx, dy, ax[i], ay[i], bx[i], by[i]))
                | ((np.abs(o3) <= EPS) & _within(ax[i], ay[i], cx, cy, dx, dy))
                | ((np.abs(o4) <= EPS) & _within(bx[i], by[i], cx, cy, dx, dy)))
            hits = np.flatnonzero(proper | touching)
            if hits.size:
                return i, int(j[hits[0]])
        return None

    def contains(self, lat: float, lon: float) -> bool:
        """Even-odd ray casting along the latitude; a point on an edge is inside."""
        lo_lat, hi_lat, lo_lon, hi_lon = self._bounds
        if not (lo_lat <= lat <= hi_lat and lo_lon <= lon <= hi_lon):
            return False
        ax, ay, bx, by = self._edges
        on_edge = ((np.abs(_orientation(ax, ay, bx, by, lat, lon)) <= EPS)
                   & _within(lat, lon, ax, ay, bx, by))
        if on_edge.any():
            return True
        spans = (ax > lat) != (bx > lat)
        with np.errstate(divide="ignore", invalid="ignore"):
            crossing = ay + (lat - ax) * (by - ay) / (bx - ax)
        return bool(np.count_nonzero(spans & (lon < crossing)) % 2)


@dataclass(frozen=True, slots=True)
class Region:
    name: str
    boxes: tuple[Box, ...] = ()
    polygons: tuple[Polygon, ...] = ()
    description: str = ""

    def __post_init__(self) -> None:
        if not NAME_RE.fullmatch(self.name):
            raise ValueError(f"region name {self.name!r} must be 1-64 letters, digits, _ . - "
                             "(starting with a letter or digit)")
        if not self.boxes and not self.polygons:
            raise ValueError(f"region {self.name!r} needs at least one box or polygon")
        if len(self.boxes) + len(self.polygons) > MAX_AREAS:
            raise ValueError(f"a region may have at most {MAX_AREAS} areas")
        if sum(len(p.points) for p in self.polygons) > MAX_REGION_POINTS:
            raise ValueError(f"a region's polygons may have at most {MAX_REGION_POINTS} "
                             "points together (simplify the outline)")

    def contains(self, lat: float, lon: float) -> bool:
        return (any(b.contains(lat, lon) for b in self.boxes)
                or any(p.contains(lat, lon) for p in self.polygons))

    def areas(self) -> dict[str, Any]:
        """The stored (and API) JSON form of the areas."""
        return {"boxes": [{"min_lat": b.min_lat, "min_lon": b.min_lon, "max_lat": b.max_lat,
                           "max_lon": b.max_lon} for b in self.boxes],
                "polygons": [[list(p) for p in poly.points] for poly in self.polygons]}


def region_of(name: str, areas: Mapping[str, Any], description: str = "") -> Region:
    """A validated region from its JSON form; ``ValueError`` names what is wrong."""
    rings = areas.get("polygons") or []
    if sum(len(ring) for ring in rings if isinstance(ring, list | tuple)) > MAX_REGION_POINTS:
        # Refused before the (quadratic) validation of each polygon.
        raise ValueError(f"a region's polygons may have at most {MAX_REGION_POINTS} points "
                         "together (simplify the outline)")
    boxes = []
    for i, box in enumerate(areas.get("boxes") or []):
        try:
            boxes.append(Box(**box))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"boxes[{i}]: {exc}") from None
    polygons = []
    for i, ring in enumerate(rings):
        try:
            points = tuple((latitude(p[0]), longitude(p[1])) if len(p) == 2 else _bad_point(p)
                           for p in ring)
            polygons.append(Polygon(points))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"polygons[{i}]: {exc}") from None
    return Region(name, tuple(boxes), tuple(polygons), description)


def _bad_point(point: object) -> Point:
    raise ValueError(f"a point is [lat, lon], got {point!r}")


@dataclass(frozen=True, slots=True)
class Position:
    lat: float
    lon: float
    ts: int  # event time of the newer of the two readings


def position_of(lat: object, lon: object, ts: int) -> Position | None:
    """A usable position from the latest values, or None (unknown)."""
    try:
        return Position(latitude(lat), longitude(lon), ts)
    except ValueError:
        return None


def in_regions(vins: list[str], positions: Mapping[str, Position],
               regions: list[Region]) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """Split ``vins`` into those inside any of ``regions`` and the others, each with why:
    ``{"reason": "location_unknown"}`` or ``{"reason": "outside_regions", "lat", "lon",
    "located_at"}``."""
    inside: list[str] = []
    excluded: dict[str, dict[str, Any]] = {}
    for vin in vins:
        where = positions.get(vin)
        if where is None:
            excluded[vin] = {"reason": LOCATION_UNKNOWN}
        elif any(r.contains(where.lat, where.lon) for r in regions):
            inside.append(vin)
        else:
            excluded[vin] = {"reason": OUTSIDE_REGIONS, "lat": where.lat, "lon": where.lon,
                             "located_at": where.ts}
    return inside, excluded
