"""Recordings of real vehicles, converted to the telemetry ``ownercare replay`` reads.

A converter per recording format (``leafspy``: LeafSpy Pro logs of a Nissan Leaf; ``carobd``:
the OBD-II CSVs of the carOBD dataset) maps the recording's columns to standard VSS paths
and units and writes JSON lines, one MQTT telemetry message per line, as
``ownercare eval --record`` does. ``census`` replays such a file and says, per detector, how
often it assessed, abstained (and why) or raised something. ``ownercare realdata --help``
has the commands; docs/quality.md ("Real recorded data") has the sources, their
licences and what the detectors said.

Each source column names the VSS path it means, whether or not the running contract
(``ingest.contract.SIGNALS``) accepts that path: paths it does not accept are dropped from the
output and counted (``--keep-unknown`` keeps them), so the same mapping feeds more detectors
as soon as the contract knows more of the catalogue. Values are converted to the unit the
contract declares for the path.
"""
