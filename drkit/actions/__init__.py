"""Actions: the commands drkit runs, one module each, and nothing else. Each takes the
``Resources`` of a plan (its repository of stores and keys, and the catalog), calls the
repository layer (``drkit.repository``) to read or write snapshots, and returns a result the
CLI renders; none touches store keys or manifest bytes itself.

- ``backup``, ``restore``, ``drill`` (with ``checks``), ``verify``, ``prune``, ``rebuild``,
  ``listing`` (``drkit snapshots``): one command each;
- ``run``: the job runner (schedules, plan locks, timeouts);
- ``tracking``: every job's catalog run, closed on every exit path;
- ``resources``: what an action works with.
"""
