"""The demo: the one place a newcomer sees the whole platform work, on the embedded default.

``headwater demo --dir DIR`` builds a platform in DIR, seeds realistic generated data across the
three embedded stores, derives a warehouse table from the transactional one, runs cross-store
queries, pages through a result, writes, and prints what it did. It leaves
``DIR/headwater.yaml`` so that ``HEADWATER_CONFIG=DIR/headwater.yaml headwater ...`` works on
what it built. Later capabilities extend :func:`run_demo`.
"""

from __future__ import annotations

import datetime as dt
import random
import shutil
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
from rich.console import Console
from rich.panel import Panel

from headwater.cli._output import print_table
from headwater.config import Config
from headwater.platform import Platform

__all__ = ["generate_customers", "generate_orders", "generate_web_events", "run_demo"]

_FIRST = ["Ada", "Alan", "Grace", "Linus", "Margaret", "Dennis", "Barbara", "Ken", "Frances", "Edsger",
          "Radia", "Tim", "Katherine", "Donald", "Shafi", "John", "Sophie", "Lukas", "Chiara", "Mateo",
          "Ingrid", "Pierre", "Aoife", "Jan", "Elena", "Noah", "Mia", "Omar", "Yuki", "Priya"]
_LAST = ["Lovelace", "Turing", "Hopper", "Torvalds", "Hamilton", "Ritchie", "Liskov", "Thompson",
         "Allen", "Dijkstra", "Perlman", "Berners-Lee", "Johnson", "Knuth", "Goldwasser", "McCarthy",
         "Wilson", "Müller", "Rossi", "García", "Larsen", "Dubois", "Murphy", "Kowalski", "Novak",
         "Schmidt", "Costa", "Haddad", "Tanaka", "Patel"]
_DOMAINS = ["example.com", "mail.example.org", "corp.example.net", "example.io"]
# (country, share, phone prefix); EU and non-EU so row filters have something to do.
_COUNTRIES = [("US", 30, "+1"), ("DE", 14, "+49"), ("FR", 12, "+33"), ("GB", 9, "+44"),
              ("IT", 8, "+39"), ("ES", 7, "+34"), ("NL", 5, "+31"), ("IE", 3, "+353"),
              ("PL", 4, "+48"), ("JP", 4, "+81"), ("BR", 4, "+55")]
_STATUSES = ["placed", "paid", "shipped", "delivered", "returned"]
_PAGES = ["/", "/products", "/products/widget", "/cart", "/checkout", "/account", "/help"]
_KINDS = ["view", "view", "view", "click", "add_to_cart", "purchase"]
EPOCH = dt.datetime(2025, 1, 1)

# The demo's governance contract (documented in the README): alice sees everything, bob sees
# masked email and phone and no ssn, carol sees EU customers only, with ssn last-4.
DEMO_POLICY = """\
version: 1
roles:
  admin:
    grants:
      - {datasets: "*", actions: [select, insert, update, delete]}
      - {topics: "*", actions: [publish, consume, register, declassify, admin]}
  analyst:
    grants:
      - {datasets: ["app.*", "warehouse.*", "lake.*"], actions: [select]}
      - {topics: "*", actions: [publish, consume, register]}
    columns:
      - {tag: pii.email, mask: email_domain}
      - {tag: pii.phone, mask: last4}
      - {tag: pii.ssn, deny: true}
  support_eu:
    grants:
      - {datasets: ["app.customers", "app.orders"], actions: [select]}
      - {topics: "cdc.app.*", actions: [consume]}
    columns:
      - {tag: pii.ssn, mask: last4}
    row_filters:
      - {datasets: app.customers, where: "country IN principal.countries"}
  dpo:
    grants:
      - {datasets: "*", actions: [erase]}
principals:
  alice: {roles: [admin]}
  bob: {roles: [analyst]}
  carol: {roles: [support_eu], attributes: {countries: [DE, FR, IT, ES, NL, IE, PL]}}
  demo: {roles: [admin], kind: service}
  demo-dpo: {roles: [dpo]}
"""
DEMO_TAGS = {"email": "pii.email", "phone": "pii.phone", "ssn": "pii.ssn", "name": "pii.name"}


def _ssn(rng: random.Random) -> str:
    area = rng.choice([a for a in range(1, 900) if a != 666][:800])
    return f"{area:03d}-{rng.randint(1, 99):02d}-{rng.randint(1, 9999):04d}"


def generate_customers(n: int, *, seed: int = 7) -> pa.Table:
    """``app.customers``: id, name, email, phone, ssn, country, created_at."""
    rng = random.Random(seed)
    weights = [w for _, w, _ in _COUNTRIES]
    ids, names, emails, phones, ssns, countries, created = [], [], [], [], [], [], []
    for i in range(1, n + 1):
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        country, _, prefix = rng.choices(_COUNTRIES, weights)[0]
        ids.append(i)
        names.append(f"{first} {last}")
        emails.append(f"{first.lower()}.{last.lower().replace('ü', 'ue').replace('í', 'i')}{i}@{rng.choice(_DOMAINS)}")
        phones.append(f"{prefix} {rng.randint(200, 999)} {rng.randint(100, 999)} {rng.randint(1000, 9999)}")
        ssns.append(_ssn(rng))
        countries.append(country)
        created.append(EPOCH + dt.timedelta(seconds=rng.randint(0, 300 * 86400)))
    return pa.table({
        "id": pa.array(ids, pa.int64()), "name": names, "email": emails, "phone": phones,
        "ssn": ssns, "country": countries, "created_at": pa.array(created, pa.timestamp("us")),
    })


def generate_orders(n: int, n_customers: int, *, seed: int = 11) -> pa.Table:
    """``app.orders``: id, customer_id, status, amount, ordered_at."""
    rng = random.Random(seed)
    return pa.table({
        "id": pa.array(range(1, n + 1), pa.int64()),
        "customer_id": pa.array([rng.randint(1, n_customers) for _ in range(n)], pa.int64()),
        "status": [rng.choice(_STATUSES) for _ in range(n)],
        "amount": [round(rng.lognormvariate(3.5, 0.8), 2) for _ in range(n)],
        "ordered_at": pa.array(
            [EPOCH + dt.timedelta(seconds=rng.randint(0, 330 * 86400)) for _ in range(n)], pa.timestamp("us")
        ),
    })


def generate_web_events(n: int, n_customers: int, *, seed: int = 13) -> pa.Table:
    """``lake.web_events``: event_id, customer_id, page, kind, ts, event_date (partition)."""
    rng = random.Random(seed)
    ts = sorted(EPOCH + dt.timedelta(days=300, seconds=rng.randint(0, 30 * 86400)) for _ in range(n))
    return pa.table({
        "event_id": pa.array(range(1, n + 1), pa.int64()),
        "customer_id": pa.array([rng.randint(1, n_customers) for _ in range(n)], pa.int64()),
        "page": [rng.choice(_PAGES) for _ in range(n)],
        "kind": [rng.choice(_KINDS) for _ in range(n)],
        "ts": pa.array(ts, pa.timestamp("us")),
        "event_date": [t.date().isoformat() for t in ts],
    })


class _Steps:
    def __init__(self, console: Console) -> None:
        self.console = console
        self.n = 0
        self.t0 = time.perf_counter()

    def __call__(self, title: str) -> Any:
        self.n += 1
        self.console.rule(f"[bold]{self.n}. {title}[/bold]", align="left")
        return self.console.status(title + "…")

    def done(self, msg: str) -> None:
        self.console.print(f"  [green]✓[/green] {msg}", highlight=False)


def run_demo(
    directory: str | Path = "headwater-demo",
    *,
    console: Console | None = None,
    n_customers: int = 20_000,
    n_orders: int = 200_000,
    n_events: int = 300_000,
) -> Platform:
    """Build the demo platform in ``directory`` and walk through the platform's features."""
    console = console or Console()
    directory = Path(directory).resolve()
    step = _Steps(console)
    console.print(Panel.fit(
        f"Headwater demo — building an embedded platform in [bold]{directory}[/bold]\n"
        "app = SQLite (transactional) · warehouse = DuckDB (analytical) · lake = Parquet files",
        border_style="cyan"))

    with step("Create the platform"):
        _reset(directory)
        cfg_path = directory / "headwater.yaml"
        cfg = Config.embedded(".")
        cfg.stores["lake"].partition_by = {"web_events": ["event_date"]}  # type: ignore[union-attr]
        cfg_path.write_text(cfg.to_yaml_with_secrets())
        platform = Platform.open(cfg_path)
        session = platform.session("demo")
    step.done(f"wrote {cfg_path} (stores: {', '.join(platform.store_names)})")

    with step("Seed realistic data"):
        t = time.perf_counter()
        customers = generate_customers(n_customers)
        orders = generate_orders(n_orders, n_customers)
        events = generate_web_events(n_events, n_customers)
        session.write("app.customers", customers, key="id")
        session.write("app.orders", orders, key="id")
        session.write("lake.web_events", events)
    step.done(f"app.customers {customers.num_rows:,} rows, app.orders {orders.num_rows:,} rows, "
              f"lake.web_events {events.num_rows:,} rows in 30 daily partitions "
              f"({time.perf_counter() - t:.1f}s)")

    with step("Derive warehouse.order_facts from the transactional store"):
        derive = ("CREATE OR REPLACE TABLE warehouse.order_facts AS "
                  "SELECT o.id AS order_id, o.customer_id, c.country, o.status, o.amount, "
                  "CAST(o.ordered_at AS DATE) AS order_date "
                  "FROM app.orders o JOIN app.customers c ON c.id = o.customer_id")
        written = session.sql(derive).to_pylist()[0]["rows_written"]
        platform.catalog.update("warehouse.order_facts", primary_key=["order_id"])
    step.done(f"warehouse.order_facts: {written:,} rows derived into DuckDB by one statement "
              "(CREATE TABLE ... AS SELECT over the SQLite store)")

    with step("Catalog"):
        report = platform.sync_catalog()
    print_table(console, pa.table({
        "dataset": [d.name for d in platform.catalog.list()],
        "kind": [d.kind for d in platform.catalog.list()],
        "columns": [len(d.columns) for d in platform.catalog.list()],
        "primary key": [", ".join(d.primary_key) for d in platform.catalog.list()],
    }))
    step.done(f"{len(platform.catalog.list())} datasets catalogued ({len(report.unchanged)} already known)")

    with step("A federated query across all three stores"):
        q = ("SELECT c.country, count(DISTINCT f.order_id) AS orders, round(sum(f.amount), 2) AS revenue, "
             "count(DISTINCT e.event_id) AS purchases_online "
             "FROM warehouse.order_facts f "
             "JOIN app.customers c ON c.id = f.customer_id "
             "LEFT JOIN lake.web_events e ON e.customer_id = c.id AND e.kind = 'purchase' "
             "WHERE f.status <> 'returned' AND c.created_at >= ? "
             "GROUP BY c.country ORDER BY revenue DESC LIMIT 5")
        t = time.perf_counter()
        top = session.sql(q, [dt.datetime(2025, 3, 1)]).to_arrow()
        elapsed = time.perf_counter() - t
        plan = session.explain(q, [dt.datetime(2025, 3, 1)])
    print_table(console, top, title="revenue by country (warehouse ⋈ app ⋈ lake)")
    console.print("[dim]" + "\n".join(line for line in plan.splitlines() if line.startswith("--")) + "[/dim]",
                  highlight=False)
    step.done(f"ran in {elapsed * 1000:.0f} ms; filters and projections pushed down to SQLite, "
              "DuckDB scans the Parquet partitions itself")

    with step("Page through a result with signed keyset cursors"):
        t = time.perf_counter()
        pages = 0
        rows = 0
        first_cursor = None
        for page in session.read("app.customers", columns=["id", "country", "created_at"],
                                 where="country IN ('DE', 'FR')", page_size=2_000):
            pages += 1
            rows += page.num_rows
            first_cursor = first_cursor or page.next_cursor
        elapsed = time.perf_counter() - t
    step.done(f"{rows:,} EU customers in {pages} pages of 2,000 ({elapsed * 1000:.0f} ms); "
              f"cursor looks like {first_cursor[:32] if first_cursor else '-'}…")

    with step("Write: upsert, append and read back"):
        changed = [{"id": 1, "name": "Ada Lovelace", "email": "ada@example.com", "phone": "+44 20 7946 0018",
                    "ssn": "123-45-6789", "country": "GB", "created_at": EPOCH}]
        session.write("app.customers", changed, mode="upsert")
        session.write("app.customers", [{"id": n_customers + 1, "name": "Grace Hopper",
                                         "email": "grace@example.com", "phone": "+1 202 555 0100",
                                         "ssn": "219-09-9999", "country": "US", "created_at": EPOCH}])
        back = session.sql("SELECT id, name, email, country FROM app.customers WHERE id IN (?, ?) ORDER BY id",
                           [1, n_customers + 1]).to_arrow()
    print_table(console, back)
    step.done("upsert replaced customer 1, append added a new customer; each write is atomic")

    _events_step(platform, session, step, console, n_customers)

    with step("Classify PII: scan the datasets' samples, propose tags, apply them"):
        from headwater.pii import apply_proposals, scan_dataset

        scans = [scan_dataset(session, name, sample=5_000) for name in ("app.customers", "app.orders")]
        applied = {s.dataset: apply_proposals(platform.catalog, s, min_confidence=0.8) for s in scans}
    print_table(console, pa.table({
        "dataset": [s.dataset for s in scans for _ in s.proposals],
        "column": [c for s in scans for c, _ in s.proposals],
        "proposed tag": [p.tag for s in scans for _, p in s.proposals],
        "confidence": [round(p.confidence, 2) for s in scans for _, p in s.proposals],
        "matches / sampled": [f"{p.matches:,} / {p.sampled:,}" for s in scans for _, p in s.proposals],
    }), title="PII proposals (counts only, never values)")
    step.done(f"applied {sum(len(v) for a in applied.values() for v in a.values())} tag(s) at confidence ≥ 0.8; "
              f"{sum(s.bytes_scanned for s in scans) / 1e6:.1f} MB scanned")

    with step("Governance: one policy, three principals, three views of the same data"):
        for column, tag in DEMO_TAGS.items():
            # names have no validator: the scan proposes pii.name from the column name only,
            # below the confidence bar, so the demo tags it by hand
            platform.catalog.set_tags("app.customers", column, [tag])
        policy_path = directory / "policy.yaml"
        policy_path.write_text(DEMO_POLICY)
        version, _ = platform.apply_policy(DEMO_POLICY, source=str(policy_path), applied_by="demo")
    step.done(f"tagged app.customers (email, phone, ssn, name), applied {policy_path.name} as "
              f"policy version {version.version}: default deny from now on")
    q = "SELECT * FROM app.customers ORDER BY id LIMIT 3"
    for who, what in (("alice", "admin: everything"), ("bob", "analyst: email domain, phone last-4, no ssn"),
                      ("carol", "support_eu: EU customers only, ssn last-4")):
        rows = platform.session(who).sql(q).to_arrow()
        print_table(console, rows, title=f"{who} ({what}) — {q}")
    counts = {who: platform.session(who).sql("SELECT count(*) AS n FROM app.customers").to_pylist()[0]["n"]
              for who in ("alice", "bob", "carol")}
    step.done(f"row counts: alice {counts['alice']:,}, bob {counts['bob']:,}, carol {counts['carol']:,} "
              "(carol's row filter binds her countries as parameters)")
    from headwater.errors import AccessDenied, QueryRejected

    for who, attempt in (("bob", "SELECT ssn FROM app.customers"),
                         ("bob", "SELECT count(*) FROM app.customers WHERE email LIKE 'ada%'"),
                         ("carol", "SELECT * FROM warehouse.order_facts"),
                         ("mallory", "SELECT * FROM app.customers")):
        try:
            platform.session(who).sql(attempt).to_arrow()
            console.print(f"  [red]✗ {who}: {attempt} was allowed[/red]", highlight=False)
        except (AccessDenied, QueryRejected) as err:
            console.print(f"  [green]✓[/green] {who}: [dim]{attempt}[/dim] → {type(err).__name__}: {err}",
                          highlight=False)

    with step("Change data capture: app.customers → events → warehouse.customers replica"):
        from headwater.cdc.demo import cdc_demo_step

        cdc_demo_step(platform, console, principal="alice")
    step.done("`headwater cdc pipeline --source app --target warehouse` runs the same continuously; "
              "on Postgres it reads the WAL through logical replication")

    with step("Retention: a policy file, a dry-run plan, then apply (archive to the lake first)"):
        from headwater.retention.demo import retention_demo_step

        retention_demo_step(platform, console)
    step.done("`headwater retention plan` / `apply` do the same from the CLI; legal holds "
              "(`headwater holds place`) stop deletion of a dataset or a subject")

    with step("Erasure: one customer removed from every copy, verified"):
        from headwater.erasure.demo import erasure_demo_step

        erased = erasure_demo_step(platform, console, "customers.id=7")
    step.done(f"job {erased.job_id}: {erased.status.value}; the report names datasets and counts, never the values")

    with step("Lineage and the audit trail"):
        up = platform.lineage.upstream("warehouse.order_facts")
        trail = platform.audit.query(limit=10_000)
        report = platform.audit.verify()
    console.print(f"  warehouse.order_facts comes from {', '.join(up.datasets)} — columns: "
                  f"{', '.join(up.columns)}", highlight=False)
    print_table(console, pa.table({
        "seq": [r.seq for r in trail[-8:]], "actor": [r.actor for r in trail[-8:]],
        "action": [r.action for r in trail[-8:]], "decision": [r.decision for r in trail[-8:]],
        "datasets": [", ".join(r.datasets) for r in trail[-8:]],
        "statement / reason": [(r.statement or r.reason or "")[:70] for r in trail[-8:]],
    }), title=f"audit trail: last 8 of {len(trail)} records")
    step.done(f"audit chain verified: {report.records_checked} records, intact={report.ok}; "
              "`headwater lineage show warehouse.order_facts --upstream` and `headwater audit verify` show the same")

    with step("SLO status of what the demo ran"):
        if platform.slo_recorder is not None:
            platform.slo_recorder.flush()
        evaluator = platform.slo_evaluator()
        evaluator.evaluate()
        rows = evaluator.status()
    from headwater.cli.slo import print_slo_status

    print_slo_status(console, rows)
    step.done("burn-rate alerting runs in-process from counters in the metadata store; "
              "`headwater slo rules` exports the same SLOs for Prometheus")

    console.print(Panel.fit(
        f"Done in {time.perf_counter() - step.t0:.1f}s. The platform stays in {directory}; try\n"
        f"  HEADWATER_CONFIG={directory}/headwater.yaml headwater catalog ls\n"
        f"  HEADWATER_CONFIG={directory}/headwater.yaml headwater sql --as carol "
        "\"SELECT country, count(*) AS n FROM app.customers GROUP BY 1 ORDER BY 2 DESC\"\n"
        f"  HEADWATER_CONFIG={directory}/headwater.yaml headwater sql --as bob \"SELECT * FROM app.customers LIMIT 5\"",
        border_style="green"))
    return platform


ORDER_SCHEMA = """{
  "type": "object",
  "properties": {
    "order_id": {"type": "integer"},
    "customer_id": {"type": "integer"},
    "amount": {"type": "number", "minimum": 0},
    "status": {"enum": ["placed", "paid", "shipped", "delivered", "returned"]}
  },
  "required": ["order_id", "customer_id", "amount", "status"]
}"""


def _events_step(platform: Platform, session: Any, step: _Steps, console: Console, n_customers: int) -> None:
    """Order events: schema, validation, routing to a sink, dead letters with reasons, replay."""
    import dataclasses

    from headwater.events.consumer import EventConsumer, RetryPolicy
    from headwater.events.envelope import Event
    from headwater.events.producer import SchemaValidator
    from headwater.events.sink import DatasetSink

    with step("Events: a schema, a producer, a sink into the warehouse, dead letters and replay"):
        schema_id = platform.register_schema("orders-value", ORDER_SCHEMA, "JSON", actor="demo")
        if "orders" not in {t.name for t in platform.bus.topics()}:
            platform.bus.create_topic("orders", partitions=3)
        producer = platform.producer(source="/shop/checkout")
        rng = random.Random(5)
        good = [{"order_id": 900_000 + i, "customer_id": rng.randint(1, n_customers),
                 "amount": round(rng.uniform(5, 300), 2), "status": rng.choice(_STATUSES)} for i in range(2_000)]
        # Two orders reference a customer the shop has not synced yet: the sink's check fails.
        late = [{"order_id": 990_001 + i, "customer_id": n_customers + 500 + i, "amount": 42.0,
                 "status": "placed"} for i in range(2)]
        events = [Event(type="order.created", source="/shop/checkout", data=d, subject=str(d["order_id"]))
                  for d in good + late]
        for i in range(0, len(events), 500):
            chunk = events[i:i + 500]
            for ev in chunk:
                producer.publish("orders", ev, key=str(ev.data["customer_id"]))
        rejected = 0
        try:
            producer.send("orders", {"order_id": "oops"}, type="order.created")
        except Exception:  # noqa: BLE001 - the producer refuses a payload that breaks the schema
            rejected += 1
        # A legacy producer that bypasses validation: a negative amount and bytes that are not an event.
        stamped = producer.prepare("orders", Event(type="order.created", source="/legacy", data=good[0]))
        platform.bus.publish("orders", dataclasses.replace(stamped, id="legacy-1", data={**good[0], "amount": -5}))
        platform.bus.publish_raw("orders", b"{not json", key="legacy")

        known = {r["id"] for r in session.sql("SELECT id FROM app.customers").to_pylist()}

        def sink_orders(batch: list[Event]) -> int:
            missing = [e.data["customer_id"] for e in batch if e.data["customer_id"] not in known]
            if missing:
                raise LookupError(f"customer {missing[0]} is not in app.customers yet")
            return sink.write(batch)

        sink = DatasetSink(session, "warehouse.order_events", key="order_id")
        consumer = EventConsumer(platform.bus, "orders", "warehouse-sink", sink_orders, batch=True,
                                 dead_letters=platform.dead_letters, validator=SchemaValidator(platform.schema_registry),
                                 retry=RetryPolicy(max_attempts=2, base=0.01, max_delay=0.05), ack_wait=2.0,
                                 slo=platform.slo_recorder)
        stats = consumer.run(idle_timeout=0.5)
        letters = platform.dead_letters.list(consumer_group="warehouse-sink")
    step.done(f"schema orders-value id {schema_id}; {len(events):,} events published, {rejected} refused by "
              f"the producer; sink wrote {stats.handled:,}, {stats.dead_lettered} dead-lettered")
    print_table(console, pa.table({
        "id": [d.id for d in letters], "stage": [d.reason.stage.value for d in letters],
        "reason": [f"{d.reason.error_class}: {d.reason.error_message}"[:70] for d in letters],
        "attempts": [d.reason.attempts for d in letters],
    }), title="dead letters (headwater dlq ls)")
    with step("Fix the cause and replay the dead letters"):
        session.write("app.customers", [{"id": n_customers + 500 + i, "name": f"Late Customer {i}",
                                         "email": f"late{i}@example.com", "phone": "+1 202 555 0199",
                                         "ssn": "078-05-1120", "country": "US", "created_at": EPOCH}
                                        for i in range(2)])
        known.update(n_customers + 500 + i for i in range(2))
        report = platform.replay_dead_letters(actor="demo", stage="handle", consumer_group="warehouse-sink")
        again = consumer.run(idle_timeout=0.5)
        total = session.sql("SELECT count(*) AS n FROM warehouse.order_events").to_pylist()[0]["n"]
        remaining = platform.dead_letters.count(consumer_group="warehouse-sink")
    step.done(f"replayed {report.replayed} (stage handle), sink wrote {again.handled} more: "
              f"warehouse.order_events has {total:,} rows; {remaining} dead letters stay, with reasons, "
              "for the malformed events")
    _routing_step(platform, step, console)


DEMO_ROUTES = """
routes:
  - name: big-orders
    match: {type: order.created, data: {amount: {gte: 250}}}
    to: orders.big
  - name: returns-to-support
    match: {data: {status: returned}}
    to: orders.returns
    project: [order_id, customer_id, status]
"""


def _routing_step(platform: Platform, step: _Steps, console: Console) -> None:
    """Route the order stream by content into two topics (fan-out, projection)."""
    from headwater.events.producer import SchemaValidator
    from headwater.events.routing import Router, router_consumer

    with step("Route events by content: big orders and returns get their own topics"):
        existing = {t.name for t in platform.bus.topics()}
        for topic in ("orders.big", "orders.returns"):
            if topic not in existing:
                platform.bus.create_topic(topic, partitions=1)
        router = Router(DEMO_ROUTES, validator=SchemaValidator(platform.schema_registry))
        routing = router_consumer(platform.bus, "orders", "router", router, dead_letters=platform.dead_letters,
                                  ack_wait=2.0, slo=platform.slo_recorder)
        stats = routing.run(idle_timeout=0.5)
        counts = {}
        for topic in ("orders.big", "orders.returns"):
            sample = platform.bus.subscribe(topic, "demo-peek").fetch(10_000, timeout=0.5)
            counts[topic] = (len(sample), sample[0].event().data if sample else {})
    print_table(console, pa.table({
        "topic": list(counts), "events": [n for n, _ in counts.values()],
        "first payload": [str(first)[:80] for _, first in counts.values()],
    }), title="routed topics (rules in YAML: match on type and payload, project fields)")
    step.done(f"router read {stats.handled:,} events; {stats.dead_lettered} dead-lettered (stage route): "
              "the malformed ones it cannot parse")


def _reset(directory: Path) -> None:
    """Remove what an earlier demo run left (only files the demo creates)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("events.db", "events.db-wal", "events.db-shm", "policy.yaml", "secret.key", "app.db", "app.db-wal", "app.db-shm", "warehouse.duckdb", "warehouse.duckdb.wal",
                 "metadata.db", "metadata.db-wal", "metadata.db-shm", "headwater.yaml"):
        (directory / name).unlink(missing_ok=True)
    shutil.rmtree(directory / "lake", ignore_errors=True)
