"""``python -m numpyro_dilation``: the ``numpyro-dilation`` command."""

import sys

from numpyro_dilation.workflow.cli import main

sys.exit(main())
