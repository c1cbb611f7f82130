"""``python -m logpipe``: the same as the ``logpipe`` console script."""

import signal
import sys

if "--dry-run" not in sys.argv and (len(sys.argv) < 2 or sys.argv[1].startswith("-")):
    # The daemon: ignore an early SIGTERM before the imports (see logpipe.commands.main).
    signal.signal(signal.SIGTERM, signal.SIG_IGN)

from logpipe.commands.main import main  # noqa: E402

sys.exit(main())
