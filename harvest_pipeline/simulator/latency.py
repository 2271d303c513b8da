"""Publish latency: how long after matching the exchange publishes a message, and holding frames until then.

On Binance a trade's ``T`` is when the matching engine filled it and ``E`` is when the publisher sent the event, so
``E - T`` is the exchange's internal latency. ``PublishLatency`` draws it once per batch: what one tick matched for
one symbol (its trades and best bid/ask changes, on every stream) or one depth diff (on every depth stream) is
published together, as Binance publishes a matching batch. The latency is lognormal with the configured median and
99th percentile, plus rare bursts in which the whole publisher lags (on average one every 5 minutes, 100 to 500 ms
long, adding 4 to 20 times the 99th percentile). ``E`` never decreases along a stream: it is
``max(previous E, T + latency)``. The draws come from a random generator of their own, so the market model's seeded
sequence does not depend on them.

``DelayedPublisher`` hands a frame to the hub once the exchange clock has reached its ``E``: at the tick that
reaches it, or earlier by a loop timer set for it, never before it. Frames go out in ``E`` order, those of one ``E``
in the order they were published, so every stream keeps its order.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import random
from collections.abc import Callable
from statistics import NormalDist

from harvest_pipeline.simulator.connections import Hub

LatencySetting = float | tuple[float, float]
"""``median`` or ``(median, p99)`` in milliseconds; a lone median gets ``TAIL_RATIO`` times it as its p99; 0: none."""
DEFAULT_PUBLISH_LATENCY_MS: tuple[float, float] = (2.0, 15.0)
TAIL_RATIO = 7.5
"""The 99th percentile of a latency given by its median alone, as a multiple of the median."""
BURST_MEAN_GAP_S = 300.0
BURST_DURATION_MS = (100, 500)
BURST_EXTRA_P99 = (4.0, 20.0)
"""The extra latency of a burst, in multiples of the 99th percentile (drawn once per burst)."""
_BURST_SHARE = sum(BURST_DURATION_MS) / 2 / (BURST_MEAN_GAP_S * 1000)
"""The share of time in a burst: the lognormal body is calibrated so that body and bursts together have the p99."""


def latency_quantiles(setting: LatencySetting) -> tuple[float, float]:
    """``(median, p99)`` in ms of a setting; ``ValueError`` saying what is wrong with it."""
    median, p99 = (setting, setting * TAIL_RATIO) if isinstance(setting, int | float) else setting
    if median < 0 or not math.isfinite(median) or not math.isfinite(p99):
        raise ValueError(f"publish latency median must be a finite number of ms >= 0, got {setting!r}")
    if median > 0 and p99 <= median:
        raise ValueError(f"publish latency p99 must be above its median, got median {median} ms and p99 {p99} ms")
    return float(median), float(p99)


def parse_latency(text: str) -> LatencySetting:
    """``"2"`` (the median) or ``"2,15"`` (median and p99) as a setting; ``ValueError`` otherwise."""
    try:
        numbers = [float(part) for part in text.split(",")]
    except ValueError:
        raise ValueError(f"publish latency {text!r} is not 'median' or 'median,p99' in ms (e.g. 2 or 2,15)") from None
    if len(numbers) not in (1, 2):
        raise ValueError(f"publish latency {text!r} is not 'median' or 'median,p99' in ms (e.g. 2 or 2,15)")
    setting: LatencySetting = numbers[0] if len(numbers) == 1 else (numbers[0], numbers[1])
    latency_quantiles(setting)
    return setting


class PublishLatency:
    """The event times of published messages: seeded, per stream non-decreasing; with median 0, ``E == T``."""

    def __init__(self, setting: LatencySetting, seed: int, start_ms: int):
        median, p99 = latency_quantiles(setting)
        self.enabled = median > 0
        self.rng = random.Random(f"{seed}:publish-latency")
        self.mu = math.log(median) if self.enabled else 0.0
        body_tail = (0.01 - _BURST_SHARE) / (1 - _BURST_SHARE)
        self.sigma = math.log(p99 / median) / NormalDist().inv_cdf(1 - body_tail) if self.enabled else 0.0
        self.p99 = p99
        self.last_event_ms: dict[str, int] = {}
        self.burst_start_ms = self.burst_end_ms = start_ms
        self.burst_extra_ms = 0
        self._next_burst(start_ms)

    def draw_ms(self, transaction_ms: int) -> int:
        """The latency of one batch matched at ``transaction_ms`` (0 when there is none)."""
        if not self.enabled:
            return 0
        latency = round(self.rng.lognormvariate(self.mu, self.sigma))
        if transaction_ms >= self.burst_start_ms:
            if transaction_ms < self.burst_end_ms:
                latency += self.burst_extra_ms
            else:
                self._next_burst(transaction_ms)
        return latency

    def event_ms(self, stream: str, transaction_ms: int, latency_ms: int) -> int:
        """The ``E`` of the messages of ``stream`` matched at ``transaction_ms`` (their ``T``) in a batch of
        ``latency_ms`` (``draw_ms``)."""
        if not self.enabled:
            return transaction_ms
        event_ms = max(self.last_event_ms.get(stream, transaction_ms), transaction_ms + latency_ms)
        self.last_event_ms[stream] = event_ms
        return event_ms

    def _next_burst(self, after_ms: int) -> None:
        rng = self.rng
        self.burst_start_ms = after_ms + round(rng.expovariate(1 / BURST_MEAN_GAP_S) * 1000)
        self.burst_end_ms = self.burst_start_ms + rng.randint(*BURST_DURATION_MS)
        self.burst_extra_ms = round(rng.uniform(*BURST_EXTRA_P99) * self.p99)


Frame = tuple[str, int, bytes]
"""``(stream, frame id, payload)`` as ``Hub.publish`` takes them."""


class DelayedPublisher:
    """Publishes frames through ``hub`` once ``clock`` (the exchange clock, ms) has reached their event time."""

    def __init__(self, hub: Hub, clock: Callable[[], int]):
        self.hub = hub
        self.clock = clock
        self.now_ms = 0
        self.now = 0.0
        self._waiting: dict[int, list[Frame]] = {}
        self._due: list[int] = []
        """The event times in ``_waiting``, as a heap."""
        self._timer: asyncio.TimerHandle | None = None
        self._timer_ms = 0

    def start_tick(self, now_ms: int, now: float) -> None:
        """At the start of a tick (``now_ms`` exchange clock, ``now`` loop clock): publish every frame whose event
        time has come; frames published in this tick are measured against these clocks."""
        self.now_ms, self.now = now_ms, now
        self._release(now_ms, now)

    def publish(self, stream: str, frame_id: int, payload: bytes, event_ms: int) -> None:
        """Publish a frame now if its event time has come, or hold it until then."""
        if event_ms <= self.now_ms:
            self.hub.publish(stream, frame_id, payload, self.now)
            return
        waiting = self._waiting.get(event_ms)
        if waiting is None:
            waiting = self._waiting[event_ms] = []
            heapq.heappush(self._due, event_ms)
            if self._timer is None or event_ms < self._timer_ms:
                self._arm(event_ms, self.now_ms, self.now)
        waiting.append((stream, frame_id, payload))

    async def drain(self, max_wait_s: float) -> None:
        """Publish every frame still held, each once its event time has come (the market clock has stopped, so none
        is added), waiting at most ``max_wait_s`` in all; what is still early then goes out at once. The simulator
        calls this when it stops, so a trade it matched is never left unsent: its accounting issued it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max_wait_s
        while self._due:
            now_ms, now = self.clock(), loop.time()
            self._release(now_ms, now)
            if not self._due:
                break
            if now >= deadline:
                self._release(max(self._due), now)
                break
            await asyncio.sleep(min((self._due[0] - now_ms) / 1000, deadline - now))
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _release(self, now_ms: int, now: float) -> None:
        due, waiting, publish = self._due, self._waiting, self.hub.publish
        while due and due[0] <= now_ms:
            for stream, frame_id, payload in waiting.pop(heapq.heappop(due)):
                publish(stream, frame_id, payload, now)

    def _arm(self, event_ms: int, now_ms: int, now: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_ms = event_ms
        self._timer = asyncio.get_running_loop().call_at(now + (event_ms - now_ms) / 1000, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        now_ms, now = self.clock(), asyncio.get_running_loop().time()
        self._release(now_ms, now)
        if self._due:
            self._arm(self._due[0], now_ms, now)
