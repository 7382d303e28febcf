"""``python -m smtp_recv``: the same as the ``smtp-recv`` command."""

import sys

from ._entry import main

sys.exit(main())
