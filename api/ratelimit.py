"""Requests per token and minute, counted in Redis so that every API process shares the counts
(the `limits` library's moving window, with its asyncio Redis storage).

A Redis that does not answer does not turn into refused requests: the request goes through, the
failure is logged, and Redis is not asked again for a few seconds (a frozen broker would otherwise
add its socket timeout to every request with a token).
"""

import logging
import math
import time
from collections.abc import Hashable

from limits import RateLimitItemPerMinute
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

log = logging.getLogger("labq.api")

NAMESPACE = "labq-token"
TIMEOUT_SECONDS = 0.5
BACKOFF_SECONDS = 5.0


class RateLimiter:
    def __init__(self, per_minute: int, redis_url: str) -> None:
        self.item = RateLimitItemPerMinute(per_minute)
        storage = storage_from_string(
            "async+" + redis_url,
            socket_timeout=TIMEOUT_SECONDS,
            socket_connect_timeout=TIMEOUT_SECONDS,
            implementation="redispy",  # redis-py's asyncio client, already a dependency
        )
        self.strategy = MovingWindowRateLimiter(storage)
        self.skip_until = 0.0

    async def hit(self, key: Hashable) -> int:
        """Count a request; 0 if allowed, else the seconds to wait before the next one."""
        if time.monotonic() < self.skip_until:
            return 0
        try:
            if await self.strategy.hit(self.item, NAMESPACE, str(key)):
                return 0
            stats = await self.strategy.get_window_stats(self.item, NAMESPACE, str(key))
            return max(1, math.ceil(stats.reset_time - time.time()))
        except Exception as exc:  # any failure of the counter store lets the request through
            self.skip_until = time.monotonic() + BACKOFF_SECONDS
            log.warning(
                "rate limiter: Redis unavailable (%s); not counting for %ss", exc, BACKOFF_SECONDS
            )
            return 0
