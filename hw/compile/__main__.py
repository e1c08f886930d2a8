import sys

from instabnn.hw.compile.compiler import main

sys.exit(main())
