"""``python -m npmobilenet``: the same as the ``npmobilenet`` command."""

import sys

from .cli import main

sys.exit(main())
