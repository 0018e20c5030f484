"""Generate ownercare's signal catalogue (ingest/vss/vss.json) from the COVESA VSS spec.

Usage (``make vss-catalogue`` runs it with a throwaway vss-tools environment)::

    python scripts/gen_vss_catalogue.py --spec DIR --release v6.0 --out ingest/vss/vss.json

``DIR`` is a checkout of github.com/COVESA/vehicle_signal_specification at ``--release``
(``git archive v6.0 | tar -x -C DIR``). The spec is exported with the ``vspec`` command of
vss-tools (``vspec export json``, instances expanded), then every leaf is flattened to one
compact entry per full path: datatype, unit, min, max, allowed values, description and the
deprecation note. ownercare reads only this JSON at run time; vss-tools is not a dependency.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

KEYS = ("datatype", "unit", "min", "max", "allowed", "description", "deprecation")


def flatten(node: dict[str, Any], prefix: str, out: dict[str, dict[str, Any]]) -> None:
    for name, child in node.items():
        path = f"{prefix}.{name}" if prefix else name
        if child.get("type") == "branch":
            flatten(child.get("children", {}), path, out)
            continue
        entry = {k: child[k] for k in KEYS if child.get(k) is not None}
        entry["type"] = child["type"]  # sensor | actuator | attribute
        out[path] = entry


def tools_version(vspec: str) -> str:
    """The vss-tools release (``vspec --version`` reports an internal number instead)."""
    python = Path(shutil.which(vspec) or vspec).parent / "python"
    done = subprocess.run([str(python), "-c", "import importlib.metadata as m; "
                           "print(m.version('vss-tools'))"], check=False, capture_output=True,
                          text=True)
    return done.stdout.strip() or "?"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", type=Path, required=True, help="VSS checkout at the release")
    parser.add_argument("--release", required=True, help="the release tag, e.g. v6.0")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--vspec", default=shutil.which("vspec") or "vspec",
                        help="the vss-tools vspec command")
    args = parser.parse_args(argv)
    root = args.spec / "spec" / "VehicleSignalSpecification.vspec"
    if not root.is_file():
        sys.stderr.write(f"error: {root} does not exist (is --spec a VSS checkout?)\n")
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        exported = Path(tmp) / "vss.json"
        command = [args.vspec, "--log-level", "error", "export", "json", "-s", str(root),
                   "-u", str(args.spec / "spec" / "units.yaml"), "-o", str(exported)]
        done = subprocess.run(command, check=False, capture_output=True, text=True)
        if done.returncode != 0 or not exported.is_file():
            sys.stderr.write(f"error: vspec failed: {done.stderr.strip()[-500:]}\n")
            return 2
        tree = json.loads(exported.read_text())
    version = tools_version(args.vspec)
    signals: dict[str, dict[str, Any]] = {}
    flatten(tree, "", signals)
    catalogue = {
        "release": args.release,
        "generator": f"vss-tools {version}: vspec export json -s spec/VehicleSignalSpecification"
                     ".vspec -u spec/units.yaml (instances expanded)",
        "source": "https://github.com/COVESA/vehicle_signal_specification",
        "license": "MPL-2.0",
        "signals": dict(sorted(signals.items())),
    }
    args.out.write_text(json.dumps(catalogue, separators=(",", ":"), ensure_ascii=False) + "\n")
    sys.stdout.write(f"{args.out}: {len(signals)} signals of VSS {args.release}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
