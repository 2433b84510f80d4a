"""``python -m dist_rt.serve``: see :mod:`dist_rt.serve.server`."""

import sys

from dist_rt.serve.server import main

if __name__ == "__main__":
    sys.exit(main())
