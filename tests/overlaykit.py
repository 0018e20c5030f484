"""A VSS overlay with one private signal, as a deployment's overlay file would hold it."""

from __future__ import annotations

# Acme's heat pump: a private branch with one bounded float sensor.
HEAT_PUMP_OVERLAY = """
Vehicle.Acme:
  type: branch
  description: Acme's private signals.
Vehicle.Acme.HeatPump.Cop:
  type: sensor
  datatype: float
  unit: ratio
  min: 0
  max: 10
  description: Coefficient of performance of the heat pump.
"""
