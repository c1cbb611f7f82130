"""``python -m logpipe.commands.health ARGS`` = ``logpipe health ARGS``."""

import sys

from logpipe.commands.main import main

sys.exit(main(["health", *sys.argv[1:]]))
