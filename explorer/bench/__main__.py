"""``python -m explorer.bench``: the matrix benchmark (``explorer.bench.matrix``)."""

import sys

from explorer.bench.matrix import main

sys.exit(main())
