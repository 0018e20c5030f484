"""The simulated physics: the ground truth the detectors are scored against.

Each module models one physical system, pure (no I/O, no wall clock) and driven by event time:
``weather`` (ambient temperature), ``battery12v`` (the 12 V battery), ``tyres`` (tyre
pressures), ``thermal`` (the traction pack's loop and the drive unit's cooling), ``cells``
(the traction battery's cell voltages) and ``charging`` (the traction battery's state of
charge while charging). The device models in ``simulators.vehicle`` and
``simulators.charger`` read them; the detectors in ``diagnostics`` are written against the
same physics without importing it (the simulator is the ground truth, not a shared helper).
"""
