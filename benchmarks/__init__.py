"""Load tests and benchmarks, a package so its modules import each other as ``benchmarks.<module>``
(the project installs it editable next to training, handlers and web; run from the repository
root, ``python -m benchmarks.<module>`` finds it too). It imports nothing: importing Locust
patches the whole process, so only the locustfiles and ``locust_common`` do.

- The load driver (``python -m benchmarks.run_load --bench|--smoke|--soak``): ``run_load``
  (arguments, servers, exit status), ``load_targets`` (scenarios, targets, mode settings),
  ``load_locust`` (one Locust process per point), ``load_soak`` (the soak run and its RSS
  samples), ``load_mode_reports`` (each mode's Markdown report and ``run.json``), on top of
  ``load_report`` (Locust's figures, tables, plots), ``load_servers``, ``load_baseline``,
  ``loopback_baseline`` and ``profiles``.
- The locustfiles (``locust -f benchmarks/locust_<scenario>.py``) and ``locust_common``.
- ``torchserve_bench`` and ``triton_bench``: single-server latency and throughput figures.
- The fault soak (``python -m benchmarks.fault_soak``, ``make soak-faults``): ``fault_soak``
  (traffic, the fault schedule, the report) over ``fault_traffic`` (visitors, the writes counted
  in the database), ``fault_stack`` (the servers and each fault's inject and repair, which
  tests/faults/ also use) and ``private_services`` (a private PostgreSQL and redis-server).
"""
