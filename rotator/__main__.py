"""`python -m rotator` is the same as the `rotator` console script."""

from rotator.cli import main

raise SystemExit(main())
