"""`python -m exporter` runs the same entry point as the console script."""

from __future__ import annotations

from exporter.cli import main

raise SystemExit(main())
