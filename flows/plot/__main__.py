"""``python -m flows.plot PATH``: one PNG per device from what a run wrote."""

import sys

from flows.plot import main

sys.exit(main())
