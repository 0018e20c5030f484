"""``ownercare eval``: detection quality of every detector on a labelled simulated fleet.

Read top-down, one concern per module:

* :mod:`.scenario`: what is simulated (seed, fleet size, days, fault mix) and its MQTT stream;
* :mod:`.simprocess`: that stream as canonical records, the simulator in a child process;
* :mod:`.run`: the records through the offline diagnostics (what the worker runs);
* :mod:`.scoring`: one run's alerts scored against the simulator's ground truth;
* :mod:`.pooling`: several runs' reports taken together (``--seeds``);
* :mod:`.report`: the reports as text;
* :mod:`.plotdata`: ``--plot``'s data, each fault's detector quantity from its own state;
* :mod:`.plot`: ``--plot``, what sampled detections looked like;
* :mod:`.cli`: the arguments of ``ownercare eval`` and the command itself.

Apart from the simulated fleet, on public data:

* :mod:`.nabscore`: the Numenta Anomaly Benchmark's scoring rules, reimplemented;
* :mod:`.nab`: ``ownercare nab``, the generic detector over a local NAB checkout.
"""
