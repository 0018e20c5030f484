"""Vehicle identification numbers: ISO 3779 VINs with the North-American check digit.

Why it matters
--------------
The VIN is every car's identity in the contract (``ingest.contract.VIN_RE``): the cloud keys
its state, alerts and cases by it. Simulated VINs must pass the same checks as real ones and
must be distinct within a fleet.

Rules
-----
* 17 characters from ``VIN_CHARS`` (never I, O or Q); the manufacturer prefix ``WMI``, the
  model's descriptor section (``ModelSpec.vds``, characters 4-8), the check digit
  (position 9), the model year (position 10, 2019-2026), the plant and a serial number.
* The check digit is the weighted sum of the transliterated characters modulo 11 (10 is
  written ``X``).
* A drawn VIN already taken in the fleet is drawn again.
"""

from __future__ import annotations

import random

VIN_LETTERS = "ABCDEFGHJKLMNPRSTUVWXYZ"
VIN_CHARS = VIN_LETTERS + "0123456789"
WMI = "WCR"
_VIN_VALUES = {**{str(d): d for d in range(10)},
               **dict(zip("ABCDEFGH", range(1, 9), strict=True)),
               **dict(zip("JKLMN", range(1, 6), strict=True)), "P": 7, "R": 9,
               **dict(zip("STUVWXYZ", range(2, 10), strict=True))}
_VIN_WEIGHTS = (8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2)
_MODEL_YEARS = "KLMNPRST"  # 2019-2026


def vin_check_digit(vin: str) -> str:
    total = sum(_VIN_VALUES[ch] * w for ch, w in zip(vin, _VIN_WEIGHTS, strict=True))
    return "X" if total % 11 == 10 else str(total % 11)


def new_vin(rng: random.Random, vds: str, taken: set[str]) -> str:
    """A VIN of the model with descriptor ``vds`` not in ``taken`` (and add it there)."""
    while True:
        body = (WMI + vds + "0" + rng.choice(_MODEL_YEARS)
                + rng.choice(VIN_LETTERS) + f"{rng.randrange(10**6):06d}")
        vin = body[:8] + vin_check_digit(body) + body[9:]
        if vin not in taken:
            taken.add(vin)
            return vin
