"""Requests per token and minute are counted in Redis (api/ratelimit.py): two API processes share
the counts, the 429 names the limit and says when to come back, and a Redis that is away lets
requests through instead of refusing them."""

import uuid

import anyio

from api.ratelimit import RateLimiter
from tests.api.test_experiment_routes import make_token
from tests.stack import free_port


def test_two_api_processes_share_one_count(redis_url):
    key = uuid.uuid4().hex
    first, second = RateLimiter(3, redis_url), RateLimiter(3, redis_url)

    async def hits() -> list[int]:
        return [
            await first.hit(key),
            await second.hit(key),
            await first.hit(key),
            await second.hit(key),
        ]

    waits = anyio.run(hits)
    assert waits[:3] == [0, 0, 0]
    assert 1 <= waits[3] <= 60  # the oldest request leaves the window within the minute


def test_a_redis_that_is_away_lets_requests_through():
    limiter = RateLimiter(1, f"redis://127.0.0.1:{free_port()}/0")

    async def hits() -> list[int]:
        return [await limiter.hit("k") for _ in range(3)]

    assert anyio.run(hits) == [0, 0, 0]


def test_over_the_rate_is_429_with_retry_after(make_client):
    client = make_client(LABQ_RATE_LIMIT_PER_MINUTE="3")
    alice = make_token("alice")
    answers = [client.get("/experiments", headers=alice) for _ in range(4)]
    assert [a.status_code for a in answers[:3]] == [200, 200, 200]
    assert answers[3].status_code == 429 and 1 <= int(answers[3].headers["retry-after"]) <= 60
