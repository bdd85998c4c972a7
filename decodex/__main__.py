"""``python -m decodex``: the command line (same as ``decodex``)."""

from decodex.app.cli import main

raise SystemExit(main())
