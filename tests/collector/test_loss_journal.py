from harvest_pipeline.collector.buffer import StreamLoss
from harvest_pipeline.collector.loss_journal import MANY_STREAMS, SLOT_BYTES, LossJournal, encode_losses
from harvest_pipeline.segments import LOCAL_FS


def loss(lines: int) -> StreamLoss:
    return StreamLoss(lines, lines * 100, 1_000, 2_000)


def test_journal_keeps_the_last_complete_state_even_when_the_newest_write_is_torn(tmp_path):
    path = tmp_path / "loss-journal"
    journal = LossJournal(path, LOCAL_FS)
    journal.reserve()
    assert path.stat().st_size == 2 * SLOT_BYTES, "space reserved up front"
    journal.write({("a@x", "queue full"): loss(3)})
    journal.write({("a@x", "queue full"): loss(5), ("b@x", "shutdown"): loss(1)})
    journal.close()
    assert LossJournal(path, LOCAL_FS).read() == {("a@x", "queue full"): loss(5), ("b@x", "shutdown"): loss(1)}

    data = bytearray(path.read_bytes())
    data[20] ^= 0xFF  # seq 2 lives in slot 0: a torn header makes it unreadable
    path.write_bytes(bytes(data))
    assert LossJournal(path, LOCAL_FS).read() == {("a@x", "queue full"): loss(3)}


def test_an_empty_journal_means_nothing_unwritten(tmp_path):
    journal = LossJournal(tmp_path / "loss-journal", LOCAL_FS)
    assert journal.read() == {} and journal.empty
    journal.reserve()
    journal.write({("a@x", "queue full"): loss(3)})
    journal.write({})
    reread = LossJournal(tmp_path / "loss-journal", LOCAL_FS)
    assert reread.read() == {} and reread.empty


def test_losses_that_do_not_fit_are_merged_but_every_line_stays_counted():
    many = {(f"s{i:05d}@aggTrade", "queue full"): loss(i + 1) for i in range(2_000)}
    payload = encode_losses(many, 4_096)
    assert len(payload) <= 4_096 and MANY_STREAMS.encode() in payload
    assert b'"lines":%d' % sum(range(1, 2_001)) in payload
