"""A change of symbols re-plans which connection carries which stream, touching only the connections whose stream list
must change: kept shards untouched, shards that lose streams replaced (filled with new streams first), empty ones
closed, the rest of the new streams on new shards."""

from harvest_pipeline.collector.config import CollectorConfig
from harvest_pipeline.collector.layout import ShardLayout, plan_layout

CONFIG = CollectorConfig(stream_kinds=("aggTrade", "bookTicker"), streams_per_connection=3)


def wanted(*symbols: str) -> dict[str, list[str]]:
    return CONFIG.streams_by_route(symbols)


def current(*symbols: str) -> list[ShardLayout]:
    plan = plan_layout([], wanted(*symbols), 3)
    assert not plan.keep and not plan.replace and not plan.close
    return plan.open


def test_a_first_layout_chunks_each_route_in_order() -> None:
    assert current("AAUSDT", "BBUSDT", "CCUSDT", "DDUSDT") == [
        ShardLayout("market", ("aausdt@aggTrade", "bbusdt@aggTrade", "ccusdt@aggTrade")),
        ShardLayout("market", ("ddusdt@aggTrade",)),
        ShardLayout("public", ("aausdt@bookTicker", "bbusdt@bookTicker", "ccusdt@bookTicker")),
        ShardLayout("public", ("ddusdt@bookTicker",)),
    ]


def test_the_same_symbols_change_nothing() -> None:
    plan = plan_layout(current("AAUSDT", "BBUSDT"), wanted("BBUSDT", "AAUSDT"), 3)
    assert plan.keep == [0, 1] and not plan.changed


def test_a_listing_opens_new_shards_and_leaves_the_others_alone() -> None:
    plan = plan_layout(current("AAUSDT", "BBUSDT", "CCUSDT"), wanted("AAUSDT", "BBUSDT", "CCUSDT", "DDUSDT"), 3)
    assert plan.keep == [0, 1] and not plan.replace and not plan.close
    assert plan.open == [ShardLayout("market", ("ddusdt@aggTrade",)), ShardLayout("public", ("ddusdt@bookTicker",))]


def test_a_delisting_replaces_the_shards_that_carried_it_and_closes_emptied_ones() -> None:
    shards = current("AAUSDT", "BBUSDT", "CCUSDT", "DDUSDT")
    plan = plan_layout(shards, wanted("AAUSDT", "CCUSDT"), 3)
    assert plan.replace == {
        0: ShardLayout("market", ("aausdt@aggTrade", "ccusdt@aggTrade")),
        2: ShardLayout("public", ("aausdt@bookTicker", "ccusdt@bookTicker")),
    }
    assert plan.close == [1, 3] and not plan.keep and not plan.open


def test_new_streams_fill_a_shard_being_replaced_before_opening_one() -> None:
    shards = current("AAUSDT", "BBUSDT", "CCUSDT", "DDUSDT")
    plan = plan_layout(shards, wanted("AAUSDT", "CCUSDT", "DDUSDT", "EEUSDT", "FFUSDT"), 3)
    assert plan.replace[0] == ShardLayout("market", ("aausdt@aggTrade", "ccusdt@aggTrade", "eeusdt@aggTrade"))
    assert plan.keep == [1, 3]
    assert ShardLayout("market", ("ffusdt@aggTrade",)) in plan.open
    assert ShardLayout("public", ("ffusdt@bookTicker",)) in plan.open
