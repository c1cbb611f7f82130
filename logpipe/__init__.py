"""logpipe: an Apache piped logger that counts every request in memcached.

The public API for web applications lives in :mod:`logpipe.api`; the memcached
key contract in :mod:`logpipe.keys`.
"""

__version__ = "0.1.0"
