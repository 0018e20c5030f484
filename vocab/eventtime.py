"""Event-time units. Every timestamp in ownercare is epoch milliseconds (the device contract's
``ts``), so durations are integer milliseconds too."""

from __future__ import annotations

from typing import Final

SECOND_MS: Final = 1_000
MINUTE_MS: Final = 60 * SECOND_MS
HOUR_MS: Final = 60 * MINUTE_MS
DAY_MS: Final = 24 * HOUR_MS
