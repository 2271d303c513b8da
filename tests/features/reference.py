"""A deliberately plain Python computation of features_1s, written for clarity, to check the DuckDB/numpy one.

It reads the raw Parquet rows with pyarrow and loops over them and over seconds; fine for a few thousand rows.
Only the definitions in docs/features.md are shared with the production code, no functions.
"""

from __future__ import annotations

import bisect
import math
import statistics
from decimal import Decimal
from pathlib import Path

import pyarrow.parquet as pq

SECONDS = 86_400


def _rows(directory: Path) -> list[dict]:
    rows = []
    for path in sorted(directory.glob("*.parquet")) if directory.is_dir() else []:
        rows.extend(pq.read_table(path).to_pylist())
    return rows


def _first_by(rows: list[dict], key: str) -> list[dict]:
    """Keep one row per exchange id: the earliest received (then segment, line)."""
    chosen: dict[int, dict] = {}
    for row in sorted(rows, key=lambda r: (r["recv_time_ns"], r["segment"], r["line"])):
        chosen.setdefault(row[key], row)
    return [chosen[k] for k in sorted(chosen)]


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _robust_z(values: list[float], t: int, present_seconds: list[int]) -> float | None:
    lo = bisect.bisect_left(present_seconds, t - 300)
    hi = bisect.bisect_left(present_seconds, t)
    sample = [values[s] for s in present_seconds[lo:hi]]
    if len(sample) < 60:
        return None
    median = statistics.median(sample)
    mad = statistics.median([abs(v - median) for v in sample])
    z = (values[t] - median) / max(1.4826 * mad, 1e-9)
    return max(-8.0, min(8.0, z))


def reference_features(kind_root: Path, events_dirs: list[Path], day_start: int, fee_tier: str = "TM") -> list[dict]:
    """One dict per second of the day with the reference value of every features_1s column."""
    trades = _first_by(_rows(kind_root / "kind=prices"), "agg_trade_id")
    ticks = _first_by(_rows(kind_root / "kind=bookticker"), "update_id")
    trades = [t for t in trades if day_start <= t["trade_time_ms"] < day_start + SECONDS * 1000]
    ticks = [t for t in ticks if day_start <= t["event_time_ms"] < day_start + SECONDS * 1000]

    def second(row: dict) -> int:
        """Trades count in the second of their trade time T, L1 updates in that of their event time E."""
        return (row.get("trade_time_ms", row["event_time_ms"]) - day_start) // 1000

    ledger = [row for directory in events_dirs for row in _rows(directory)]
    recorded = _recorded_seconds(ledger, day_start, [t["recv_time_ns"] // 1_000_000 for t in trades + ticks])
    for row in trades + ticks:
        recorded[second(row)] = True

    out = [{"second_of_day": s, "time_ms": day_start + s * 1000} for s in range(SECONDS)]
    by_second: dict[int, list[dict]] = {}
    for trade in trades:
        by_second.setdefault(second(trade), []).append(trade)
    latencies: dict[int, list[int]] = {}
    for row in trades + ticks:
        latencies.setdefault(second(row), []).append(row["latency_ms"])

    close, cvd = None, Decimal(0)
    for s, row in enumerate(out):
        if not recorded[s]:
            close = None
        group = by_second.get(s, [])
        buy = sum((t["qty"] for t in group if not t["is_buyer_maker"]), Decimal(0))
        sell = sum((t["qty"] for t in group if t["is_buyer_maker"]), Decimal(0))
        volume = sum((t["qty"] for t in group), Decimal(0))
        quote = sum((t["price"] * t["qty"] for t in group), Decimal(0))
        cvd += buy - sell
        if group:
            close = float(group[-1]["price"])  # groups are in agg id order
        row.update(
            open=float(group[0]["price"]) if group else None,
            high=float(max(t["price"] for t in group)) if group else None,
            low=float(min(t["price"] for t in group)) if group else None,
            close=close,
            volume=float(volume),
            quote_volume=float(quote),
            vwap=float(quote) / float(volume) if group else None,
            trade_count=len(group),
            buy_volume=float(buy),
            sell_volume=float(sell),
            delta=float(buy - sell),
            cvd=float(cvd),
            is_empty=not group,
            latency_ms_p50=_quantile(latencies[s], 0.5) if s in latencies else None,
            latency_ms_p99=_quantile(latencies[s], 0.99) if s in latencies else None,
            recorded=recorded[s],
        )

    ofi = [Decimal(0)] * SECONDS
    updates = [0] * SECONDS
    last_in_second: dict[int, dict] = {}
    latest_time: dict[int, int] = {}
    previous = None
    for tick in ticks:  # in update id order
        s = second(tick)
        if previous is not None:
            b, bq, a, aq = tick["bid_price"], tick["bid_qty"], tick["ask_price"], tick["ask_qty"]
            pb, pbq, pa_, paq = previous["bid_price"], previous["bid_qty"], previous["ask_price"], previous["ask_qty"]
            e = (bq if b >= pb else 0) - (pbq if b <= pb else 0) - (aq if a <= pa_ else 0) + (paq if a >= pa_ else 0)
            ofi[s] += e
        updates[s] += 1
        last_in_second[s] = tick
        latest_time[s] = max(latest_time.get(s, 0), tick["event_time_ms"])
        previous = tick
    state, last_time = None, None
    for s, row in enumerate(out):
        if not recorded[s]:
            state, last_time = None, None
        if s in last_in_second:
            state = last_in_second[s]
            last_time = latest_time[s]
        b = float(state["bid_price"]) if state else None
        a = float(state["ask_price"]) if state else None
        bq = float(state["bid_qty"]) if state else None
        aq = float(state["ask_qty"]) if state else None
        mid = (b + a) / 2 if state else None
        row.update(
            best_bid=b,
            best_ask=a,
            bid_size=bq,
            ask_size=aq,
            mid=mid,
            spread_bps=(a - b) / mid * 1e4 if state else None,
            microprice=(b * aq + a * bq) / (aq + bq) if state else None,
            imbalance_l1=(bq - aq) / (bq + aq) if state else None,
            book_updates=updates[s],
            ofi=float(ofi[s]),
            book_stale=last_time is None or day_start + (s + 1) * 1000 - last_time > 5000,
        )

    _book_columns(out, _rows(kind_root / "kind=book_1s"), l1_from_book=not ticks)
    _derivatives_columns(out, kind_root, day_start, recorded)

    windows = _gap_windows(ledger, day_start)
    for row in out:
        start = day_start + row["second_of_day"] * 1000
        row["gap"] = any(lo < start + 1000 and hi >= start for lo, hi in windows)

    deltas = [row["delta"] for row in out]
    ofis = [row["ofi"] for row in out]
    trade_counts = [row["trade_count"] for row in out]
    trade_seconds = [s for s in range(SECONDS) if trade_counts[s] > 0]
    book_seconds = [s for s in range(SECONDS) if out[s]["book_updates"] > 0]
    returns = []  # (second, squared 1-s log return of mid) wherever the mid is known at s - 1 and s
    for s in range(1, SECONDS):
        if out[s - 1]["mid"] is not None and out[s]["mid"] is not None:
            ratio = out[s]["mid"] / out[s - 1]["mid"]
            returns.append((s, 0.0 if ratio == 1 else math.log(ratio) ** 2))
    return_seconds = [s for s, _ in returns]
    for s, row in enumerate(out):
        ofi_z = _robust_z(ofis, s, book_seconds)
        cvd_z = _robust_z(deltas, s, trade_seconds)
        fusion = 0.6 * ofi_z + 0.4 * cvd_z if ofi_z is not None and cvd_z is not None else None
        window_trades = sum(trade_counts[max(0, s - 299) : s + 1])
        lo, hi = bisect.bisect_left(return_seconds, s - 299), bisect.bisect_right(return_seconds, s)
        realized_vol = math.sqrt(sum(r2 for _, r2 in returns[lo:hi])) if hi > lo else None
        hour = s // 3600
        row.update(
            ofi_z=ofi_z,
            cvd_z=cvd_z,
            fusion=fusion,
            fusion_signal=None if fusion is None else (1 if fusion >= 1.0 else -1 if fusion <= -1.0 else 0),
            trades_per_s_trailing=window_trades / min(s + 1, 300),
            realized_vol_trailing=realized_vol,
            session="Tokyo" if hour < 8 else "London" if hour < 14 else "NY",
            fee_tier=fee_tier,
        )
        row["regime"] = "Active" if row["trades_per_s_trailing"] >= 2.0 else "Quiet"
    defined = [row["realized_vol_trailing"] for row in out if row["realized_vol_trailing"] is not None]
    median = statistics.median(defined) if defined else None
    for row in out:
        rv = row["realized_vol_trailing"]
        row["vol_bucket"] = None if rv is None else "High" if rv >= median else "Low"
        row["scenario_2x2"] = None if rv is None else f"{row['regime'][0]}_{row['vol_bucket'][0]}"
    return out


def _book_columns(out: list[dict], book: list[dict], l1_from_book: bool) -> None:
    """Multi-level OFI and depth imbalance from the valid seconds of the reconstructed book; on a day without any
    bookTicker (``l1_from_book``) and with a book, the L1 columns too: level 1 where valid, null and stale elsewhere."""
    by_second = {row["second_of_day"]: row for row in book}
    source = "bookticker" if not l1_from_book else "book" if book else "none"
    for s, row in enumerate(out):
        level = by_second.get(s)
        valid = level is not None and level["valid"]
        row.update(ofi_l5=None, depth_imbalance_l5=None, depth_imbalance_l20=None, l1_source=source)
        if valid:
            row["ofi_l5"] = sum(ofi / k for k, ofi in enumerate(level["ofi_levels"], start=1))
            for depth in (5, 20):
                bids, asks = sum(level["bid_qtys"][:depth], Decimal(0)), sum(level["ask_qtys"][:depth], Decimal(0))
                row[f"depth_imbalance_l{depth}"] = float(bids - asks) / float(bids + asks) if bids + asks else None
        if source != "book":
            continue
        b, a = (float(level["bid_prices"][0]), float(level["ask_prices"][0])) if valid else (None, None)
        bq, aq = (float(level["bid_qtys"][0]), float(level["ask_qtys"][0])) if valid else (None, None)
        row.update(
            best_bid=b,
            best_ask=a,
            bid_size=bq,
            ask_size=aq,
            mid=(b + a) / 2 if valid else None,
            spread_bps=(a - b) / ((b + a) / 2) * 1e4 if valid else None,
            microprice=(b * aq + a * bq) / (aq + bq) if valid else None,
            imbalance_l1=(bq - aq) / (bq + aq) if valid else None,
            book_updates=level["diffs"] if level is not None else 0,
            ofi=level["ofi_levels"][0] if valid else 0.0,
            book_stale=not valid,
        )


def _disconnect_end(record: dict, ledger: list[dict], day_start: int) -> int:
    """A disconnect lasts until the next (re)connection record, or to the end of the day."""
    later = [r["event_time_ms"] for r in ledger if r["event"] in ("connect", "subscribed", "recovered")]
    later = [t for t in later if t >= record["event_time_ms"]]
    return min(later) if later else day_start + SECONDS * 1000 - 1


def _is_replacement(record: dict) -> bool:
    return record["event"] == "disconnect" and (record["reason"] or "").startswith("replaced")


def _gap_windows(ledger: list[dict], day_start: int, down_only: bool = False) -> list[tuple[int, int]]:
    """[lo, hi] ms of every gap-like ledger record (only disconnects and 'collector down' gaps with ``down_only``)."""
    windows = []
    for record in ledger:
        if record["event"] not in ("gap", "write_loss", "disconnect", "watchdog") or _is_replacement(record):
            continue
        collector_down = record["event"] == "gap" and (record["reason"] or "").startswith("collector down")
        if down_only and not (record["event"] == "disconnect" or collector_down):
            continue
        lo = record["from_time_ms"] if record["from_time_ms"] is not None else record["event_time_ms"]
        if record["to_time_ms"] is not None:
            hi = record["to_time_ms"]
        elif record["event"] == "disconnect":
            hi = _disconnect_end(record, ledger, day_start)
        else:
            hi = record["event_time_ms"]
        windows.append((lo, hi))
    return windows


def _open_at_midnight(ledger: list[dict], day_start: int) -> bool:
    """Whether some connection's last record before the day was a connect/subscribed, not a disconnect."""
    last: dict[str, tuple[int, bool]] = {}
    for record in sorted(ledger, key=lambda r: (r["event_time_ms"], r["event"] == "disconnect")):
        if record["event_time_ms"] < day_start and record["event"] in ("connect", "subscribed", "disconnect"):
            last[record["conn_id"]] = (record["event_time_ms"], record["event"] != "disconnect")
    return any(is_open for _, is_open in last.values())


def _recorded_seconds(ledger: list[dict], day_start: int, data_recv_ms: list[int]) -> list[bool]:
    """Seconds a collector was recording: inside [first record (or 00:00 if connected at midnight), last record],
    not wholly covered by disconnect or collector-down windows (each second swept on its own)."""
    day_end = day_start + SECONDS * 1000
    records = [r["event_time_ms"] for r in ledger if day_start <= r["event_time_ms"] < day_end] + data_recv_ms
    if not records:
        return [False] * SECONDS
    first = day_start if _open_at_midnight(ledger, day_start) else min(records)
    last = max(records)
    windows = sorted(w for w in _gap_windows(ledger, day_start, down_only=True) if w[1] >= day_start and w[0] < day_end)
    recorded = []
    for s in range(SECONDS):
        start = day_start + s * 1000
        covered_to = start  # sweep: the first ms of the second not yet covered by a window
        for lo, hi in windows:
            if lo <= covered_to <= hi:
                covered_to = hi + 1
        recorded.append(start + 1000 > first and start <= last and covered_to < start + 1000)
    return recorded


def _by_time(rows: list[dict], day_start: int, clock: str = "event_time_ms") -> list[dict]:
    """One row per event time (earliest received), of the day by ``clock``, in event time order."""
    in_day = [r for r in rows if day_start <= r[clock] < day_start + SECONDS * 1000]
    return sorted(_first_by(in_day, "event_time_ms"), key=lambda r: r["event_time_ms"])


def _derivatives_columns(out: list[dict], kind_root: Path, day_start: int, recorded: list[bool]) -> None:
    """Mark and index price, basis, funding rate and open interest (each the latest value at the second's end, carried
    through recorded seconds only) and liquidated quantity per side (in the second of the liquidation's trade time)."""
    marks = _by_time(_rows(kind_root / "kind=mark_price"), day_start)
    interests = _by_time(_rows(kind_root / "kind=open_interest"), day_start)
    liquidations = _by_time(_rows(kind_root / "kind=liquidations"), day_start, "trade_time_ms")
    mark_at = {(m["event_time_ms"] - day_start) // 1000: m for m in marks}  # the last of each second wins
    interest_at = {(o["event_time_ms"] - day_start) // 1000: o for o in interests}
    liquidated: dict[tuple[int, str], Decimal] = {}
    for row in liquidations:
        key = ((row["trade_time_ms"] - day_start) // 1000, row["side"])
        liquidated[key] = liquidated.get(key, Decimal(0)) + row["filled_qty"]
    mark, interest = None, None
    for s, row in enumerate(out):
        if not recorded[s]:
            mark, interest = None, None
        mark = mark_at.get(s, mark)
        interest = interest_at.get(s, interest)
        index = mark["index_price"] if mark else None
        row.update(
            mark_price=float(mark["mark_price"]) if mark else None,
            index_price=float(index) if mark else None,
            basis_bps=float((mark["mark_price"] - index) / index) * 1e4 if mark and index > 0 else None,
            funding_rate=float(mark["funding_rate"]) if mark else None,
            liquidation_buy_volume=float(liquidated.get((s, "BUY"), 0)),
            liquidation_sell_volume=float(liquidated.get((s, "SELL"), 0)),
            open_interest=float(interest["open_interest"]) if interest else None,
            open_interest_age_s=(day_start + (s + 1) * 1000 - interest["event_time_ms"]) / 1000 if interest else None,
        )
