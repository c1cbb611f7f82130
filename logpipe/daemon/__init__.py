"""What runs under httpd: the supervisor (the piped logger itself), the worker it forks, the counting pipeline, the memcached store and the raw archive."""
