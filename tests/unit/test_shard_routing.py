"""Shard routing: `independent`, the hint that lets a batch skip the database's pass looking for shared
debits, and how ops on their own connections spread over shards."""

from payments.shard_routing import ShardRouter, _Sharded, independent


def transfer(key: str, *legs: tuple[int, int]) -> dict:
    return {"op": "transfer", "key": key, "legs": [{"a": a, "m": m, "c": "KES"} for a, m in legs]}


def test_distinct_payers_and_a_shared_credited_account_are_independent():
    ops = [transfer("k1", (1, -101), (2, 100), (99, 1)), transfer("k2", (3, -202), (4, 200), (99, 2))]
    assert independent(ops)


def test_an_account_debited_by_one_op_and_touched_by_another_is_not():
    assert not independent([transfer("k1", (1, -100), (2, 100)), transfer("k2", (1, -5), (3, 5))])
    # Credited by the other op still makes the first op's check depend on the order.
    assert not independent([transfer("k1", (1, -100), (2, 100)), transfer("k2", (3, -5), (1, 5))])


def test_repeated_keys_other_operations_and_lone_ops_are_not():
    assert not independent([transfer("k1", (1, -1), (2, 1)), transfer("k1", (3, -1), (4, 1))])
    assert not independent([transfer("k1", (1, -1), (2, 1)), {"op": "hold", "key": "h", "legs": []}])
    assert not independent([transfer("k1", (1, -1), (2, 1))])


def test_an_op_whose_legs_on_one_account_net_to_a_credit_is_not_a_debit():
    ops = [transfer("k1", (1, -10), (1, 15), (2, -5)), transfer("k2", (3, -1), (1, 1))]
    assert independent(ops)


def test_ops_on_their_own_connections_take_the_shards_in_turn():
    """Concurrent ops each hold their shard's lock until they commit: n ops in a row land on n
    different shards (random picks would often put two on one), and a debit of an account that may
    not go negative stays where it is."""
    router = ShardRouter(None)  # type: ignore[arg-type]  # route_cached never reads the database
    router._shards = {7: _Sharded((70, 71, 72, 73), takes_debits=False)}
    ops = [{"op": "transfer", "key": f"k{n}", "legs": [{"a": 1, "m": -5, "c": "KES"}, {"a": 7, "m": 5, "c": "KES"}]}
           for n in range(8)]
    routed = [router.route_cached(op, spread=True)["legs"][1]["a"] for op in ops]
    assert sorted(routed[:4]) == [70, 71, 72, 73] and sorted(routed[4:]) == [70, 71, 72, 73]
    debit = {"op": "transfer", "key": "d", "legs": [{"a": 7, "m": -5, "c": "KES"}, {"a": 1, "m": 5, "c": "KES"}]}
    assert router.route_cached(debit, spread=True)["legs"][0]["a"] == 7
