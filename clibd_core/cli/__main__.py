"""``python -m clibd_core.cli`` (used by ``accelerate launch … -m clibd_core.cli``)."""

import sys

from clibd_core.cli import main

sys.exit(main())
