"""``python -m tracer ...`` runs the steptrace command line (same as ``steptrace ...``)."""
import sys

from .app.cli import main

sys.exit(main())
