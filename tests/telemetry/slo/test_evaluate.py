"""Burn-rate evaluation against the SRE workbook's arithmetic, driven by synthetic SLI streams.

Objective 99.9 % means a budget of 0.1 %: a 14.4x burn is an error ratio of 1.44 %, 6x is
0.6 %, 1x is 0.1 %.
"""

from __future__ import annotations

import json

import pytest

from headwater.telemetry.slo import SLOEvaluator, SLORecorder, load_slos
from tests.telemetry.slo.conftest import feed

ONE_RULE = """
service: hw
slos:
  - name: orders
    objective: 99.9
    sli: {events: {name: orders}}
    alerting:
      min_events: 1
      burn_rates:
        - {severity: page, long: 1h, short: 5m, factor: 14.4}
"""

WORKBOOK = """
service: hw
slos:
  - name: orders
    objective: 99.9
    description: Orders API answers without a server error.
    sli: {events: {name: orders}}
"""


class Collect:
    """A notifier that keeps what it is sent."""

    name = "collect"

    def __init__(self, severities=None) -> None:
        self.sent = []
        self.severities = severities

    def send(self, notification) -> None:
        self.sent.append(notification)


def setup(meta, clock, spec=WORKBOOK, **kw):
    slos = load_slos(spec)
    rec = SLORecorder(meta, slos, clock=clock)
    notifier = Collect()
    ev = SLOEvaluator(meta, slos, notifiers=[notifier], recorder=rec, clock=clock, **kw)
    return rec, ev, notifier


def firing(ev) -> dict[str, bool]:
    (st,) = ev.status()
    return {sev: a.firing for sev, a in st.alerts.items()}


@pytest.mark.parametrize(("bad", "fires"), [(144, True), (143, False), (200, True), (0, False)])
def test_page_fires_exactly_at_14_4x(meta, clock, bad, fires):
    rec, ev, notifier = setup(meta, clock, ONE_RULE)
    rec.record("orders", 10_000 - bad, 10_000)  # 1.44 % of 10,000 is 144
    events = ev.evaluate()
    assert [e.action for e in events] == (["fire"] if fires else [])
    assert firing(ev) == {"page": fires}
    (st,) = ev.status()
    assert st.burn_rates["1h"] == pytest.approx(bad / 10_000 / 0.001)
    if fires:
        assert events[0].details["triggered_by"] == "1h/5m@14.4x"
        assert len(notifier.sent) == 1


def test_long_window_alone_does_not_fire(meta, clock):
    rec, ev, _ = setup(meta, clock, ONE_RULE)
    feed(rec, "orders", clock, range(5, 60), 90, 100)   # 10 % bad, but over an hour ago..6 min ago
    feed(rec, "orders", clock, range(0, 5), 100, 100)   # the last five minutes are clean
    assert ev.evaluate() == []
    (st,) = ev.status()
    assert st.burn_rates["1h"] == pytest.approx(550 / 6000 / 0.001)
    assert st.burn_rates["5m"] == 0
    # the burn resumes: 10 bad in the current minute makes the 5m window 10/500 = 2 % >= 1.44 %
    rec.record("orders", 90, 100)
    assert [e.action for e in ev.evaluate()] == ["fire"]


def test_short_window_alone_does_not_fire(meta, clock):
    rec, ev, _ = setup(meta, clock, ONE_RULE)
    feed(rec, "orders", clock, range(5, 60), 100, 100)
    feed(rec, "orders", clock, range(0, 5), 90, 100)    # 10 % bad over 5m; 50/6000 = 0.83 % over 1h
    assert ev.evaluate() == []
    (st,) = ev.status()
    assert st.burn_rates["5m"] == pytest.approx(100)
    assert st.burn_rates["1h"] == pytest.approx(50 / 6000 / 0.001)


def test_resolves_when_the_burn_stops(meta, clock):
    rec, ev, notifier = setup(meta, clock, ONE_RULE)
    feed(rec, "orders", clock, range(0, 60), 90, 100)   # 10 % bad for an hour
    assert [e.action for e in ev.evaluate()] == ["fire"]
    for _ in range(4):                                   # clean minutes; the 5m window still burns
        clock.advance(minutes=1)
        rec.record("orders", 100, 100)
        assert ev.evaluate() == []
    clock.advance(minutes=1)
    rec.record("orders", 100, 100)                       # the last bad minute leaves the 5m window
    events = ev.evaluate()
    assert [e.action for e in events] == ["resolve"]
    assert firing(ev) == {"page": False}
    assert [n.action for n in notifier.sent] == ["fire", "resolve"]
    assert notifier.sent[0].incident == notifier.sent[1].incident == events[0].incident


def test_workbook_defaults_six_x_pages_and_one_x_tickets(meta, clock):
    rec, ev, notifier = setup(meta, clock)
    feed(rec, "orders", clock, range(0, 360), 99, 100)  # 1 % bad for 6h: under 14.4x, over 6x
    ev.evaluate()
    (st,) = ev.status()
    assert st.alerts["page"].firing and st.alerts["page"].triggered_by == "6h/30m@6x"
    assert st.alerts["ticket"].firing and st.alerts["ticket"].triggered_by == "3d/6h@1x"
    assert sorted(n.severity for n in notifier.sent) == ["page", "ticket"]


def test_workbook_defaults_below_six_x_only_tickets(meta, clock):
    rec, ev, _ = setup(meta, clock)
    feed(rec, "orders", clock, range(0, 360), 199, 200)  # 0.5 % bad: 5x
    ev.evaluate()
    assert firing(ev) == {"page": False, "ticket": True}


def test_workbook_defaults_fast_burn_pages_on_the_first_rule(meta, clock):
    rec, ev, _ = setup(meta, clock)
    feed(rec, "orders", clock, range(60, 360), 100, 100)  # 5 clean hours
    feed(rec, "orders", clock, range(0, 60), 98, 100)     # then 2 % bad for an hour: 20x over 1h
    ev.evaluate()
    (st,) = ev.status()
    # 6h: 120/36000 = 0.33 % is under 6x, so only the 1h/5m rule holds
    assert st.burn_rates["6h"] == pytest.approx(120 / 36000 / 0.001)
    assert st.alerts["page"].triggered_by == "1h/5m@14.4x"


def test_low_traffic_does_not_page_on_one_failure(meta, clock):
    rec, ev, notifier = setup(meta, clock)
    rec.record("orders", 2, 3)   # 33 % bad, but only 3 events: fewer than the auto minimum of 70
    assert ev.evaluate() == []
    assert firing(ev) == {"page": False, "ticket": False}
    assert notifier.sent == []
    # 70 events with the one failure: enough traffic, but 1/70 = 1.43 % < 1.44 %
    rec.record("orders", 67, 67)
    assert ev.evaluate() == []
    # a second failure among 71 events (2.8 %) pages; the ticket needs 1001 events over 3d
    rec.record("orders", 0, 1)
    assert [(e.severity, e.action) for e in ev.evaluate()] == [("page", "fire")]


def test_min_events_is_what_stops_low_traffic(meta, clock):
    rec, ev, _ = setup(meta, clock, ONE_RULE)  # min_events: 1
    rec.record("orders", 2, 3)
    assert [e.action for e in ev.evaluate()] == ["fire"]


def test_budget_remaining(meta, clock):
    rec, ev, _ = setup(meta, clock)
    (st,) = ev.status()
    assert st.total == 0 and st.sli is None and st.error_budget_remaining == 100.0
    # spread over days so no alert window matters: 100,000 events, 50 bad over 28 days
    feed(rec, "orders", clock, range(3 * 1440, 3 * 1440 + 1000), 100, 100)
    rec.record("orders", 50, 100, at=clock.ago(days=10))
    rec.record("orders", 0, 0, at=clock.ago(days=40))   # outside the window: ignored
    rec.record("orders", 0, 100, at=clock.ago(days=29))
    rec.flush()
    (st,) = ev.status()
    assert (st.good, st.total) == (100_050, 100_100)
    assert st.sli == pytest.approx(100 * 100_050 / 100_100)
    # allowed bad = 0.1 % of 100,100 = 100.1; 50 spent
    assert st.error_budget_remaining == pytest.approx(100 * (1 - 50 / 100.1))
    rec.record("orders", 0, 150, at=clock.ago(days=20))  # 200 bad of 100,250: overspent
    rec.flush()
    (st,) = ev.status()
    assert st.error_budget_remaining == pytest.approx(100 * (1 - 200 / 100.25))
    assert st.error_budget_remaining < 0


def test_notifications_are_deduplicated_across_evaluations_and_processes(meta, clock):
    rec, ev, notifier = setup(meta, clock, ONE_RULE)
    rec.record("orders", 90, 100)
    for _ in range(3):
        ev.evaluate()
        clock.advance(seconds=20)
        rec.record("orders", 90, 100)
    assert [n.action for n in notifier.sent] == ["fire"]
    # a second process (a new evaluator on the same store) sees the alert already notified
    other = Collect()
    ev2 = SLOEvaluator(meta, ev.slos, notifiers=[other], clock=clock)
    assert ev2.evaluate() == []
    assert other.sent == []
    # resolve, then a new incident fires with a new key and is notified again
    clock.advance(minutes=6)
    rec.record("orders", 100, 100)
    assert [e.action for e in ev.evaluate()] == ["resolve"]
    assert ev2.evaluate() == []
    clock.advance(minutes=1)
    rec.record("orders", 0, 100)
    ev.evaluate()
    assert [n.action for n in notifier.sent] == ["fire", "resolve", "fire"]
    assert notifier.sent[0].incident != notifier.sent[2].incident
    assert other.sent == []


def test_failed_notification_is_retried_then_not_repeated(meta, clock):
    class Flaky(Collect):
        fail = True

        def send(self, notification):
            if self.fail:
                raise OSError("down")
            super().send(notification)

    flaky, steady = Flaky(), Collect()
    slos = load_slos(ONE_RULE)
    rec = SLORecorder(meta, slos, clock=clock)
    ev = SLOEvaluator(meta, slos, notifiers=[flaky, steady], recorder=rec, clock=clock)
    rec.record("orders", 0, 10)
    ev.evaluate()
    assert flaky.sent == [] and len(steady.sent) == 1
    (st,) = ev.status()
    assert st.alerts["page"].notified_state == "ok"   # released for a retry
    flaky.fail = False
    ev.evaluate()
    assert len(flaky.sent) == 1 and len(steady.sent) == 2   # at least once for the one that worked
    ev.evaluate()
    assert len(flaky.sent) == 1 and len(steady.sent) == 2


def test_notifiers_filter_by_severity(meta, clock):
    slos = load_slos(WORKBOOK)
    rec = SLORecorder(meta, slos, clock=clock)
    pager, chat = Collect(severities={"page"}), Collect()
    ev = SLOEvaluator(meta, slos, notifiers=[pager, chat], recorder=rec, clock=clock)
    feed(rec, "orders", clock, range(0, 360), 199, 200)   # ticket only
    ev.evaluate()
    assert pager.sent == [] and [n.severity for n in chat.sent] == ["ticket"]


def test_status_and_report_structures(meta, clock):
    rec, ev, _ = setup(meta, clock)
    feed(rec, "orders", clock, range(0, 60), 98, 100)
    feed(rec, "orders", clock, range(1440, 1500), 100, 100)
    ev.evaluate()
    (st,) = ev.status()
    assert st.id == "hw-orders" and st.objective == 99.9 and st.window == "28d"
    assert list(st.burn_rates) == ["5m", "30m", "1h", "6h", "3d", "28d"]
    assert st.state == "page"
    assert [w.window for w in st.windows] == list(st.burn_rates)
    report = ev.report()
    (entry,) = report.entries
    assert entry.bad_events == 120
    assert entry.allowed_bad_events == pytest.approx(12_000 * 0.001)
    assert entry.budget_consumed == pytest.approx(100 - st.error_budget_remaining)
    assert entry.budget_consumed == pytest.approx(1000)
    assert entry.exhaustion_hours is None                # already overspent
    assert [d.total for d in entry.daily] == [6000, 6000]
    assert {(h.severity, h.action) for h in entry.history} == {("page", "fire"), ("ticket", "fire")}
    doc = json.loads(json.dumps(report.as_dict()))
    assert doc["entries"][0]["status"]["state"] == "page"
    assert doc["entries"][0]["status"]["alerts"]["page"]["state"] == "firing"
    with pytest.raises(Exception, match="no SLO"):
        ev.status(["hw-missing"])


def test_exhaustion_estimate(meta, clock):
    rec, ev, _ = setup(meta, clock, ONE_RULE)
    feed(rec, "orders", clock, range(0, 60), 99_990, 100_000)   # 0.01 %: a 0.1x burn
    rec.flush()
    (entry,) = ev.report().entries
    assert entry.status.burn_rates["1h"] == pytest.approx(0.1)
    # 90 % of a 28-day budget left, spent at 0.1x: 0.9 * 672 h / 0.1
    assert entry.exhaustion_hours == pytest.approx(0.9 * 672 / 0.1)
