"""drkit's benchmarks: drkit backup, restore and drill against pg_dump and pg_restore on the
local PostgreSQL server. Entry point: ``bench/run`` (see bench/README.md); it writes
bench/RESULTS.md.

- ``main``: options and the order of the rounds; ``scenarios``: the measurements
- ``workspace``: the temporary folder, databases and child processes of a run, all cleaned up
- ``server``, ``dataset``: the PostgreSQL server, the benchmark databases and the 1% change
- ``plans``, ``drkit_cli``: drkit plans and the measured drkit commands
- ``measure``: timing one command (wall, CPU, peak RSS), medians
- ``moto``: the S3 server (moto) for the S3 case
- ``profile``, ``explain``: py-spy profiles, and why targets are missed
- ``report``, ``sections``, ``markdown``, ``machine``: RESULTS.md
"""
