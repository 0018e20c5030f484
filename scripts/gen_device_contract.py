"""Write the device contract documents (AsyncAPI 3.0 and JSON Schemas) to docs/contract/.

    .venv/bin/python scripts/gen_device_contract.py [--out docs/contract]

They are generated from ``ingest/contract.py`` and the pinned VSS catalogue
(``ingest.device_docs``); tests/ingest/test_device_docs.py fails when the files there differ
from what this writes, so rerun it after changing the contract.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ingest.device_docs import render


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/contract"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in render().items():
        (args.out / name).write_text(text)
        sys.stdout.write(f"{args.out / name}\n")


if __name__ == "__main__":
    main()
