"""``python -m explorer``: the command line (``explorer.cli``)."""

from explorer.cli import main

raise SystemExit(main())
