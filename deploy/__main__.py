"""``python -m instabnn.deploy classify|bench|assemble ...``: the driver's command line (classify, bench) and the
deployment folder (assemble)."""

from __future__ import annotations

import sys


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "assemble":
        from instabnn.deploy.assemble import main as assemble_main

        return assemble_main(argv[1:])
    from instabnn.deploy.driver import main as driver_main

    if not argv or argv[0] in ("-h", "--help"):
        print("usage: python -m instabnn.deploy {classify,bench,assemble} ...\n"
              "  classify / bench: the runtime driver (--help of each); assemble: the folder for the board")
        return 0 if argv else 1
    return driver_main(argv)


if __name__ == "__main__":
    sys.exit(main())
