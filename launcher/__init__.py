"""What ``run.py`` needs besides the app: a Redis of its own when no ``REDIS_URL`` is given
(``embedded_redis``, also the servers that the tests and benchmarks start)."""
