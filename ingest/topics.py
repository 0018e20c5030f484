"""Kafka topic names: the one place every service takes them from."""

from typing import Final

VEHICLES: Final = "ownercare.vehicles"  # canonical vehicle records (telemetry, events, OTA status)
CHARGERS: Final = "ownercare.chargers"  # canonical charger records (OCPP status, meter values)
DEAD_LETTER: Final = "ownercare.deadletter"  # invalid MQTT messages: raw bytes, topic, reason
ALERTS: Final = "ownercare.alerts"  # alert upserts from detectors, keyed by alert id
OTA_COMMANDS: Final = "ownercare.ota.commands"  # cloud -> vehicle commands, keyed by VIN
# Each bridge and worker process reports its counters here every few seconds (keyed by
# instance); the API reads them back for GET /metrics. Tiny: one record per process per period.
SERVICE_METRICS: Final = "ownercare.service-metrics"

ALL: Final = (VEHICLES, CHARGERS, DEAD_LETTER, ALERTS, OTA_COMMANDS, SERVICE_METRICS)
