import pytest

from harvest_pipeline.collector.sequencing import (
    MAX_ID,
    MAX_ID_JUMP,
    MAX_ID_LAG,
    NOT_AN_INTEGER,
    AggTradeSequence,
    DepthSequence,
    FirstIdDepthSequence,
    Gap,
    extract_int,
    extract_stream,
    sequence_for,
)


def depth(first: int, final: int, prev: int) -> bytes:
    return (
        b'{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1,"T":1,"s":"BTCUSDT",'
        b'"U":%d,"u":%d,"pu":%d,"b":[["1.0","2"]],"a":[]}}' % (first, final, prev)
    )


def spot_depth(first: int | bytes, final: int) -> bytes:
    """A spot diff: no ``pu`` and no ``T``; it follows the diff whose ``u`` is its ``U`` - 1."""
    value = first if isinstance(first, bytes) else b"%d" % first
    return (
        b'{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1,"s":"BTCUSDT",'
        b'"U":%b,"u":%d,"b":[["1.0","2"]],"a":[]}}' % (value, final)
    )


def agg(agg_id: int | bytes) -> bytes:
    value = agg_id if isinstance(agg_id, bytes) else b"%d" % agg_id
    return b'{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","E":1,"a":%b,"p":"1","q":"1","f":9,"l":9}}' % value


def test_stream_name_is_found_with_or_without_the_combined_prefix():
    assert extract_stream(agg(1)) == b"btcusdt@aggTrade"
    assert extract_stream(b'{"data":{},"stream":"ethusdt@bookTicker"}') == b"ethusdt@bookTicker"
    assert extract_stream(b'{"result":null,"id":1}') is None
    assert extract_stream(b'{"stream":"') is None


def test_ids_are_extracted_case_sensitively():
    frame = depth(100, 105, 99)
    assert (extract_int(frame, b'"U":'), extract_int(frame, b'"u":'), extract_int(frame, b'"pu":')) == (100, 105, 99)
    assert extract_int(b'{"A":1}', b'"a":') is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b'{"a":12}', 12),
        (b'{"x":1,"a":12}}', 12),
        (b'{"a": 12 ,"b":3}', 12),
        (b'{"a":-3,"b":4}', -3),
        (b'{"a":-3}', -3),
        (b'{"a":18446744073709551616,"b":1}', 2**64),
        (b'{"a":18446744073709551616}', 2**64),
        (b'{"a":99999999999999999999}', 10**20 - 1),
        (b'{"a":' + b"9" * 5000 + b',"b":1}', NOT_AN_INTEGER),
        (b'{"a":' + b"9" * 5000 + b"}", NOT_AN_INTEGER),
        (b'{"a":1.5,"b":1}', NOT_AN_INTEGER),
        (b'{"a":1e3}', NOT_AN_INTEGER),
        (b'{"a":"x"}', NOT_AN_INTEGER),
        (b'{"a":}', NOT_AN_INTEGER),
        (b'{"a":', NOT_AN_INTEGER),
    ],
)
def test_id_extraction_never_raises_and_tells_absurd_values_apart(raw, expected):
    assert extract_int(raw, b'"a":') == expected


def test_the_last_field_is_read_whole_not_up_to_its_last_digit():
    assert extract_int(b'{"e":"aggTrade","a":12345}', b'"a":') == 12345
    assert extract_int(b'{"e":"aggTrade","a":12345', b'"a":') == 12345


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


def test_ids_outside_int64_or_not_integers_are_implausible_and_leave_the_tracker_where_it_was():
    sequence = AggTradeSequence("btcusdt@aggTrade")
    assert sequence.observe(agg(10)) is None
    assert sequence.observe(agg(2**64)) == "aggTrade id a=18446744073709551616 outside 0..2^63-1"
    assert sequence.observe(agg(MAX_ID + 1)) == "aggTrade id a=9223372036854775808 outside 0..2^63-1"
    assert sequence.observe(agg(-1)) == "aggTrade id a=-1 outside 0..2^63-1"
    assert sequence.observe(agg(b"9" * 5000)) == f"aggTrade id a={'9' * 40}... (5000 chars) outside 0..2^63-1"
    assert sequence.observe(agg(b'"12"')) == 'aggTrade id a="12" is not an integer'
    assert sequence.observe(agg(b"1.5")) == "aggTrade id a=1.5 is not an integer"
    assert sequence.last_id == 10
    assert sequence.observe(agg(11)) is None, "nothing above moved the tracker: 11 follows 10"
    gap = sequence.observe(agg(15))
    assert (gap.reason, gap.expected, gap.got, gap.missing) == ("aggTrade id jump", 12, 15, 3)


def test_a_jump_beyond_the_bound_is_implausible_in_both_directions_but_within_it_a_gap_or_duplicate():
    sequence = AggTradeSequence("btcusdt@aggTrade")
    base = 10**13
    sequence.observe(agg(base))
    too_far = base + MAX_ID_JUMP + 1
    assert (
        sequence.observe(agg(too_far))
        == f"aggTrade id a={too_far} is more than 2^40 ahead of the last accepted id {base}"
    )
    too_old = base - MAX_ID_LAG - 1
    assert (
        sequence.observe(agg(too_old))
        == f"aggTrade id a={too_old} is more than 2^24 behind the last accepted id {base}"
    )
    assert sequence.observe(agg(base - MAX_ID_LAG)) is None, "far behind but within the bound: a duplicate"
    gap = sequence.observe(agg(base + MAX_ID_JUMP))
    assert (gap.expected, gap.got, gap.missing) == (base + 1, base + MAX_ID_JUMP, MAX_ID_JUMP - 1)


def test_two_consecutive_consistent_implausible_ids_are_a_rebase_not_a_blind_tracker():
    sequence = AggTradeSequence("btcusdt@aggTrade")
    sequence.observe(agg(100))
    assert isinstance(sequence.observe(agg(10**18)), str)
    assert isinstance(sequence.observe(agg(5 * 10**17)), str), "not consistent with the previous one"
    new_base = 5 * 10**17
    assert sequence.observe(agg(new_base + 1)) == Gap("btcusdt@aggTrade", "aggTrade id rebase", 101, new_base + 1, None)
    assert sequence.last_id == new_base + 1
    assert sequence.observe(agg(new_base + 2)) is None
    assert isinstance(sequence.observe(agg(100)), str), "a stray id of the old base is now the implausible one"
    assert sequence.observe(agg(new_base + 3)) is None


def test_an_accepted_id_between_two_implausible_ones_prevents_the_rebase():
    sequence = AggTradeSequence("btcusdt@aggTrade")
    sequence.observe(agg(100))
    assert isinstance(sequence.observe(agg(10**18)), str)
    assert sequence.observe(agg(101)) is None
    assert isinstance(sequence.observe(agg(10**18 + 1)), str), "the two absurd ids were not consecutive"
    assert sequence.last_id == 101


def test_resume_after_reports_the_downtime_gap_with_the_given_reason_once():
    sequence = AggTradeSequence("btcusdt@aggTrade")
    sequence.resume_after(500, "ids missed while the collector was down (crash)")
    assert sequence.observe(agg(499)) is None, "at or below the resumed id: a duplicate"
    gap = sequence.observe(agg(520))
    assert gap == Gap("btcusdt@aggTrade", "ids missed while the collector was down (crash)", 501, 520, 19)
    assert sequence.observe(agg(530)).reason == "aggTrade id jump"


def test_resume_after_with_no_downtime_gap_leaves_later_gaps_with_their_own_reason():
    sequence = AggTradeSequence("btcusdt@aggTrade")
    sequence.resume_after(500, "ids missed while the collector was down (restart)")
    assert sequence.observe(agg(501)) is None
    assert sequence.observe(agg(510)).reason == "aggTrade id jump"


def test_implausible_depth_ids_are_set_aside_and_gap_detection_stays_alive():
    sequence = DepthSequence("btcusdt@depth@100ms")
    sequence.observe(depth(1, 5, 0))
    sequence.needs_snapshot = False
    assert sequence.observe(depth(6, 2**64, 5)) == "depth id u=18446744073709551616 outside 0..2^63-1"
    assert sequence.observe(depth(6, 9, -1)) == "depth id pu=-1 outside 0..2^63-1"
    reason = f"depth id u={10**18} is more than 2^40 ahead of the last accepted u 5"
    assert sequence.observe(depth(6, 10**18, 5)) == reason
    assert sequence.last_u == 5 and not sequence.needs_snapshot
    assert sequence.observe(depth(6, 9, 5)) is None
    gap = sequence.observe(depth(15, 20, 14))
    assert (gap.reason, gap.expected, gap.got, gap.missing) == ("depth pu chain break", 9, 14, 5)


def test_depth_rebase_after_two_chained_implausible_diffs_asks_for_a_snapshot():
    sequence = DepthSequence("btcusdt@depth@100ms")
    sequence.observe(depth(1, 5, 0))
    sequence.needs_snapshot = False
    base = 10**17
    assert isinstance(sequence.observe(depth(base + 1, base + 10, base)), str)
    gap = sequence.observe(depth(base + 11, base + 20, base + 10))
    assert gap == Gap("btcusdt@depth@100ms", "depth id rebase", 5, base + 10, None)
    assert sequence.needs_snapshot and sequence.last_u == base + 20


def test_depth_resume_after_reports_the_downtime_break_and_still_asks_for_a_snapshot():
    sequence = DepthSequence("btcusdt@depth@100ms")
    sequence.resume_after(1000, "ids missed while the collector was down (crash)")
    assert sequence.last_u == 1000 and sequence.needs_snapshot
    sequence.needs_snapshot = False  # what the intake does once it has asked for the snapshot
    gap = sequence.observe(depth(1201, 1210, 1200))
    assert gap == Gap("btcusdt@depth@100ms", "ids missed while the collector was down (crash)", 1000, 1200, 200)
    assert sequence.needs_snapshot


def test_depth_resume_after_without_a_break_still_asks_for_a_snapshot_at_the_first_diff():
    sequence = DepthSequence("btcusdt@depth@100ms")
    sequence.resume_after(1000, "ids missed while the collector was down (restart)")
    assert sequence.observe(depth(1001, 1010, 1000)) is None and sequence.needs_snapshot
    sequence.needs_snapshot = False
    assert sequence.observe(depth(1015, 1020, 1014)).reason == "depth pu chain break"


def test_a_corrupt_id_believed_within_the_forward_bound_is_healed_by_the_real_ids_behind_it():
    sequence = AggTradeSequence("btcusdt@aggTrade")
    sequence.observe(agg(100))
    forged = 100 + 10**9
    assert sequence.observe(agg(forged)).got == forged, "within 2^40: believed, reported as a gap"
    assert isinstance(sequence.observe(agg(101)), str), "the real ids are now far behind"
    gap = sequence.observe(agg(102))
    assert (gap.reason, gap.expected, gap.got) == ("aggTrade id rebase", forged + 1, 102)
    assert sequence.observe(agg(103)) is None


def test_a_spot_diff_continues_the_chain_when_its_first_id_follows_the_previous_final_id():
    sequence = FirstIdDepthSequence("btcusdt@depth@100ms")
    assert sequence.observe(spot_depth(1, 5)) is None and sequence.needs_snapshot, "the first diff asks for a snapshot"
    sequence.needs_snapshot = False
    assert sequence.observe(spot_depth(6, 9)) is None and sequence.observe(spot_depth(10, 10)) is None
    assert sequence.observe(spot_depth(6, 9)) is None, "a duplicate from an overlapping connection is not a gap"
    assert sequence.last_u == 10 and not sequence.needs_snapshot


def test_a_spot_diff_whose_first_id_skips_ids_breaks_the_chain_as_if_its_pu_were_first_id_minus_one():
    sequence = FirstIdDepthSequence("btcusdt@depth@100ms")
    sequence.observe(spot_depth(1, 9))
    sequence.needs_snapshot = False
    gap = sequence.observe(spot_depth(15, 20))
    assert gap == Gap("btcusdt@depth@100ms", "depth U chain break", 9, 14, 5)
    assert sequence.needs_snapshot and sequence.BREAK == "U chain break"
    sequence.needs_snapshot = False
    assert sequence.observe(spot_depth(21, 22)) is None, "the chain goes on from the diff that broke it"


def test_the_pu_rule_cannot_follow_spot_diffs_which_is_why_spot_streams_get_the_first_id_tracker():
    assert DepthSequence("x").observe(spot_depth(15, 20)) is None, "no pu: the pu tracker sees nothing to check"
    assert isinstance(sequence_for("btcusdt@depth@100ms", "first_id"), FirstIdDepthSequence)
    assert type(sequence_for("btcusdt@depth@100ms", "pu")) is DepthSequence
    assert type(sequence_for("btcusdt@depth@100ms")) is DepthSequence, "USDⓈ-M's chain unless told otherwise"


def test_implausible_spot_first_ids_are_set_aside_under_their_own_name_and_a_chained_pair_rebases():
    sequence = FirstIdDepthSequence("btcusdt@depth@100ms")
    sequence.observe(spot_depth(1, 5))
    sequence.needs_snapshot = False
    assert sequence.observe(spot_depth(-1, 9)) == "depth id U=-1 outside 0..2^63-1"
    assert sequence.observe(spot_depth(b'"x"', 9)) == 'depth id U="x" is not an integer'
    assert sequence.last_u == 5 and not sequence.needs_snapshot
    base = 10**17
    assert isinstance(sequence.observe(spot_depth(base + 1, base + 10)), str)
    gap = sequence.observe(spot_depth(base + 11, base + 20))
    assert gap == Gap("btcusdt@depth@100ms", "depth id rebase", 5, base + 10, None)
    assert sequence.needs_snapshot and sequence.last_u == base + 20


def test_a_spot_resume_reports_the_downtime_break_with_its_reason():
    sequence = FirstIdDepthSequence("btcusdt@depth@100ms")
    sequence.resume_after(1000, "ids missed while the collector was down (crash)")
    sequence.needs_snapshot = False
    gap = sequence.observe(spot_depth(1201, 1210))
    assert gap == Gap("btcusdt@depth@100ms", "ids missed while the collector was down (crash)", 1000, 1200, 200)
