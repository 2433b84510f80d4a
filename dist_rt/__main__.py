"""``python -m dist_rt`` is ``python -m dist_rt.run``."""

import sys

from dist_rt.run import main

sys.exit(main())
