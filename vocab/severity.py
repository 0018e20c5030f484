"""Alert severities, lowest first: detectors raise them, cases take the highest of their alerts'
and set their SLA by it, the database refuses any other."""

from __future__ import annotations

from typing import Final, Literal

Severity = Literal["info", "warning", "critical"]
SEVERITIES: Final[tuple[Severity, ...]] = ("info", "warning", "critical")
