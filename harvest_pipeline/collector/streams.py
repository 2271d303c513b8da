"""Per-stream live state shared by the readers (which update it per frame), the watchdog, metrics and /healthz."""

from __future__ import annotations


class StreamState:
    """Counters and timestamps of one subscribed stream; updated on the hot path with plain attribute writes."""

    __slots__ = (
        "name",
        "route",
        "quiet",
        "frames",
        "bytes",
        "last_recv_ns",
        "connection",
        "watch_since_ns",
        "watchdog_fires",
    )

    def __init__(self, name: str, route: str, quiet: bool = False):
        self.name = name
        self.route = route
        self.quiet = quiet
        """Silence is normal for this stream (``config.QUIET_STREAM_KINDS``): never watched, never unhealthy."""
        self.frames = 0
        self.bytes = 0
        self.last_recv_ns: int | None = None
        self.connection: str | None = None
        self.watch_since_ns: int | None = None
        self.watchdog_fires = 0

    def silent_for_ns(self, now_ns: int) -> int | None:
        """How long the stream has been silent on its current connection, or None while it has no connection."""
        if self.watch_since_ns is None:
            return None
        return now_ns - max(self.watch_since_ns, self.last_recv_ns or 0)

    def health(self, now_ns: int, watchdog_ns: int) -> dict[str, object]:
        """This stream's entry in /healthz."""
        silent = self.silent_for_ns(now_ns)
        if silent is None:
            state = "connecting"
        elif self.quiet:
            state = "quiet"
        elif self.last_recv_ns is None or self.last_recv_ns < (self.watch_since_ns or 0):
            state = "waiting" if silent < watchdog_ns else "silent"
        else:
            state = "live" if silent < watchdog_ns else "silent"
        return {
            "state": state,
            "watched": not self.quiet,
            "connection": self.connection,
            "frames": self.frames,
            "last_frame_age_s": None if self.last_recv_ns is None else round((now_ns - self.last_recv_ns) / 1e9, 3),
            "watchdog_fires": self.watchdog_fires,
        }
