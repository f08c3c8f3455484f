"""`python -m interlock`: the same entry point as the `interlock` console script."""

from interlock.cli import main

raise SystemExit(main())
