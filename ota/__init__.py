"""Over-the-air updates, pure: campaign model, signed manifests, health gate, rollout engine,
regions and regression stop. No I/O: ``storage/ota.py`` persists campaigns and the worker's
timer (``worker/ota_runner.py``) steps them."""
