"""The ``logpipe`` command line: the entry point (:mod:`logpipe.commands.main`) and one module per subcommand."""
