"""Where things are: flat-earth geometry around the fleet's city.

Why it matters
--------------
Homes, workplaces, outings and public chargers are points a few to a few tens of kilometres
apart. A trip's length sets its cruising speed and energy, and the drive between two chargers
sets when a retrying driver can plug in again.

Rules
-----
* An equirectangular approximation (``KM_PER_DEGREE`` of latitude, shrinking with
  cos(latitude) for longitude) is exact enough at city scale and needs no draw.
* Roads are not straight lines: a route is ``ROUTE_FACTOR`` times the straight distance.
"""

from __future__ import annotations

import math

Point = tuple[float, float]

CITY: Point = (48.137, 11.575)
KM_PER_DEGREE = 111.2
ROUTE_FACTOR = 1.3


def offset_point(origin: Point, km: float, bearing: float) -> Point:
    lat = origin[0] + km * math.cos(bearing) / KM_PER_DEGREE
    lon = origin[1] + km * math.sin(bearing) / (KM_PER_DEGREE * math.cos(math.radians(origin[0])))
    return lat, lon


def distance_km(a: Point, b: Point) -> float:
    dy = (b[0] - a[0]) * KM_PER_DEGREE
    dx = (b[1] - a[1]) * KM_PER_DEGREE * math.cos(math.radians((a[0] + b[0]) / 2))
    return math.hypot(dx, dy)
