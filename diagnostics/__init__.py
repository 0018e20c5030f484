"""Pure detectors and the pipelines that run them per asset (numpy, event time, no I/O);
the Faust worker that feeds them is ``worker/``."""
