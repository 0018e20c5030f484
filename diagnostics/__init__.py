"""Pure detectors (numpy, no I/O) and the thin Faust agents that feed them."""
