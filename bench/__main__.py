"""``python -m bench``: the same as ``bench/run``."""

from bench.main import main

raise SystemExit(main())
