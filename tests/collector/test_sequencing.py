from harvest_pipeline.collector.sequencing import (
    AggTradeSequence,
    DepthSequence,
    extract_int,
    extract_stream,
    sequence_for,
)


def depth(first: int, final: int, prev: int) -> bytes:
    return (
        b'{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1,"T":1,"s":"BTCUSDT",'
        b'"U":%d,"u":%d,"pu":%d,"b":[["1.0","2"]],"a":[]}}' % (first, final, prev)
    )


def agg(agg_id: int) -> bytes:
    return b'{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","E":1,"a":%d,"p":"1","q":"1","f":9,"l":9}}' % agg_id


def test_stream_name_is_found_with_or_without_the_combined_prefix():
    assert extract_stream(agg(1)) == b"btcusdt@aggTrade"
    assert extract_stream(b'{"data":{},"stream":"ethusdt@bookTicker"}') == b"ethusdt@bookTicker"
    assert extract_stream(b'{"result":null,"id":1}') is None
    assert extract_stream(b'{"stream":"') is None


def test_ids_are_extracted_case_sensitively():
    frame = depth(100, 105, 99)
    assert (extract_int(frame, b'"U":'), extract_int(frame, b'"u":'), extract_int(frame, b'"pu":')) == (100, 105, 99)
    assert extract_int(b'{"a":"x"}', b'"a":') is None


def test_agg_trade_jump_is_a_gap_but_overlap_duplicates_are_not():
    sequence = AggTradeSequence("btcusdt@aggTrade")
    assert [sequence.observe(agg(i)) for i in (10, 11, 11, 10, 12)] == [None] * 5
    gap = sequence.observe(agg(20))
    assert (gap.expected, gap.got, gap.missing) == (13, 20, 7)
    assert sequence.observe(agg(21)) is None


def test_depth_chain_asks_for_a_snapshot_at_start_and_after_a_break():
    sequence = DepthSequence("btcusdt@depth@100ms")
    assert sequence.observe(depth(1, 5, 0)) is None and sequence.needs_snapshot
    sequence.needs_snapshot = False
    assert sequence.observe(depth(6, 9, 5)) is None and not sequence.needs_snapshot
    assert sequence.observe(depth(6, 9, 5)) is None, "a duplicate from an overlapping connection is not a gap"
    gap = sequence.observe(depth(15, 20, 14))
    assert (gap.expected, gap.got) == (9, 14) and sequence.needs_snapshot


def test_only_sequenced_kinds_get_a_tracker():
    assert isinstance(sequence_for("btcusdt@aggTrade"), AggTradeSequence)
    assert isinstance(sequence_for("btcusdt@depth@100ms"), DepthSequence)
    assert sequence_for("btcusdt@depth20@100ms") is None
    assert sequence_for("btcusdt@bookTicker") is None
