"""The ``logpipe`` command with the experiments of :mod:`bench.experiments` applied.

Run by httpd in place of ``logpipe`` (an absolute path to this file, after the
venv's python).  Options it takes itself, before logpipe's own:

``--x-coalesce``  read coalescing in the supervisor (10 ms) and worker (20 ms)
``--x-nice``      the worker at nice +10
``--x-findall``   the findall + catch-all scan

Everything else goes to ``logpipe.cli.main`` unchanged.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import experiments  # noqa: E402


def main(argv: list[str]) -> int:
    """Apply the ``--x-*`` experiments named in *argv*, then run logpipe with the rest."""
    rest = []
    for arg in argv:
        if arg == "--x-coalesce":
            experiments.patch_read_coalescing()
        elif arg == "--x-nice":
            experiments.patch_worker_nice()
        elif arg == "--x-findall":
            experiments.patch_findall_scan()
        else:
            rest.append(arg)
    from logpipe import cli

    return cli.main(rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
