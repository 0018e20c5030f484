"""Kafka topic names: the one place every service takes them from."""

from typing import Final

VEHICLES: Final = "ownercare.vehicles"  # canonical vehicle records (telemetry, events, OTA status)
CHARGERS: Final = "ownercare.chargers"  # canonical charger records (OCPP status, meter values)
DEAD_LETTER: Final = "ownercare.deadletter"  # refused MQTT messages and OCPP frames, with reason
ALERTS: Final = "ownercare.alerts"  # alert upserts from detectors, keyed by alert id
OTA_COMMANDS: Final = "ownercare.ota.commands"  # cloud -> vehicle commands, keyed by VIN
REMOTE_COMMANDS: Final = "ownercare.remote.commands"  # signed support commands, keyed by VIN
# Each bridge and worker process reports its counters here every few seconds (keyed by
# instance); the API reads them back for GET /metrics. Tiny: one record per process per period.
SERVICE_METRICS: Final = "ownercare.service-metrics"
# Finished charging sessions (charger, VIN, abnormal end, error code) from the charger agents
# to the one attribution agent, which needs the whole fleet's sessions in one place to tell a
# charger fault from a car's inlet fault. One partition: one consumer sees every outcome.
CHARGING_OUTCOMES: Final = "ownercare.charging-outcomes"

ALL: Final = (VEHICLES, CHARGERS, DEAD_LETTER, ALERTS, OTA_COMMANDS, REMOTE_COMMANDS,
              SERVICE_METRICS, CHARGING_OUTCOMES)
SINGLE_PARTITION: Final = frozenset({CHARGING_OUTCOMES})
