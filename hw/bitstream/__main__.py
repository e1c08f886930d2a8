"""``python -m instabnn.hw.bitstream`` (``make bitstream``)."""

import sys

from .flow import main

sys.exit(main())
