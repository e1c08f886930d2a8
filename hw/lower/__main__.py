import sys

from instabnn.hw.lower.cli import main

sys.exit(main())
