"""``python -m langsmith_access.cli``: the same as the ``langsmith-access`` console script."""

import sys

from langsmith_access.cli import main

sys.exit(main())
