"""`python -m clients.eval` is `colm-eval`."""

from clients.eval.cli import main

raise SystemExit(main())
