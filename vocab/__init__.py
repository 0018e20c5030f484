"""The words every layer shares: event-time units and alert severities.

Lowest layer of ownercare: it imports nothing of the project, so the device contract, the
detectors, the case workflow, the database and the simulator all say "a day" and "critical"
with the same constant.
"""
