"""Launch nx-27017 in the foreground with quiet logging.

nx-27017 logs every command at INFO level; for an embedded database that is
noise and disk churn, so this launcher sets WARNING before handing over to
nx-27017's own command line (same arguments).
"""

import logging
import sys


def main() -> int:
    logging.basicConfig(
        level=logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    from nx_27017.nx_27017 import main as nx_main

    return nx_main() or 0


if __name__ == "__main__":
    sys.exit(main())
