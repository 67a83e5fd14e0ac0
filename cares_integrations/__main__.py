"""``python -m cares_integrations``: the ``cares`` command line."""

import sys

from .cli import main

sys.exit(main())
