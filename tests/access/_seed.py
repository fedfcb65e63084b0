"""Seed rows for access tests (customers in app, orders in warehouse, events in lake)."""

from __future__ import annotations

import random
from dataclasses import dataclass

import pyarrow as pa

COUNTRIES = ["US", "DE", "FR", "JP", None]
STATUSES = ["paid", "refunded", "pending"]
KINDS = ["view", "click", "buy"]


@dataclass
class Seed:
    customers: list[dict]
    orders: list[dict]
    events: list[dict]


def make_seed(seed: int = 7) -> Seed:
    rnd = random.Random(seed)
    customers = [
        {"id": i, "name": f"cust{i:03d}", "country": rnd.choice(COUNTRIES),
         "email": None if i % 9 == 0 else f"c{i}@example.com"}
        for i in range(1, 41)
    ]
    orders = []
    for oid in range(1, 161):
        # a few orders reference customers that do not exist (and one has no customer at all)
        cid = rnd.randint(1, 45) if oid != 5 else None
        orders.append({"order_id": oid, "customer_id": cid,
                       "amount": rnd.randint(1, 400) / 4, "status": rnd.choice(STATUSES)})
    events = [
        {"customer_id": rnd.randint(1, 42), "kind": rnd.choice(KINDS), "seq": n}
        for n in range(220)
    ]
    return Seed(customers, orders, events)


CUSTOMERS_SCHEMA = pa.schema([("id", pa.int64()), ("name", pa.string()), ("country", pa.string()),
                              ("email", pa.string())])
ORDERS_SCHEMA = pa.schema([("order_id", pa.int64()), ("customer_id", pa.int64()),
                           ("amount", pa.float64()), ("status", pa.string())])
EVENTS_SCHEMA = pa.schema([("customer_id", pa.int64()), ("kind", pa.string()), ("seq", pa.int64())])


def load_seed(platform, seed: Seed | None = None) -> Seed:
    """Write the seed rows through the SDK into app, warehouse and lake."""
    seed = seed or make_seed()
    s = platform.session("loader")
    s.write("app.customers", pa.Table.from_pylist(seed.customers, CUSTOMERS_SCHEMA), key="id")
    s.write("warehouse.orders", pa.Table.from_pylist(seed.orders, ORDERS_SCHEMA), key="order_id")
    s.write("lake.events", pa.Table.from_pylist(seed.events, EVENTS_SCHEMA))
    return seed
