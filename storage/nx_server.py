"""Launch nx-27017 in the foreground with quiet logging and a parent watchdog.

nx-27017 logs every command at INFO level; for an embedded database that is
noise and disk churn, so this launcher sets WARNING before handing over to
nx-27017's own command line (same arguments).

The watchdog: nx-27017 stops on SIGTERM by raising SystemExit from its signal
handler, but a signal the kernel hands to one of its worker threads only runs
that handler once the main thread wakes up, which an idle server may never
do. ``PR_SET_PDEATHSIG`` alone therefore does not guarantee that the server
dies with its owner. The watchdog notices the owner's death itself, signals
the main thread directly, and exits hard if a clean stop takes too long
(SQLite's journal makes a hard exit as safe as a crash).
"""

import logging
import os
import signal
import sys
import threading
import time

POLL_SECONDS = 0.2
GRACE_SECONDS = 3.0


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(POLL_SECONDS)
    signal.pthread_kill(threading.main_thread().ident, signal.SIGTERM)
    time.sleep(GRACE_SECONDS)
    os._exit(0)


def main() -> int:
    logging.basicConfig(
        level=logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    threading.Thread(target=_watch_parent, args=(os.getppid(),), name="parent-watchdog", daemon=True).start()
    from nx_27017.nx_27017 import main as nx_main

    return nx_main() or 0


if __name__ == "__main__":
    sys.exit(main())
