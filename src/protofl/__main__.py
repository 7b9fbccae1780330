"""``python -m protofl`` is the ``protofl`` command."""

import sys

from protofl.cli import main

sys.exit(main())
