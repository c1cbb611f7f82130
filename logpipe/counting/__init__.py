"""The counting rules shared by the daemon, ``--dry-run`` and ``rollup``: the LogFormat compiler, line parsing, page-view classification, referrers and user agents."""
