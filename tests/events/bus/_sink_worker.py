"""A sink consumer process for the fault tests: ``python -m tests.events.bus._sink_worker
<platform_dir> <bus_url> <subject_prefix> <idle_timeout_s>``.

Sinks topic ``orders`` into ``app.fault_orders`` (key ``_event_id``) as group ``sinkers``;
events with ``"poison": true`` fail in the sink and are dead-lettered; an event with
``"die": true`` kills this process (``os._exit``) every time it is handled.
"""

from __future__ import annotations

import os
import sys
import time

from headwater import Config, Platform
from headwater.events.bus import connect
from headwater.events.consumer import RetryPolicy
from headwater.events.dlq import DeadLetterStore
from headwater.events.envelope import Event
from headwater.events.sink import DatasetSink, sink_consumer


def main() -> None:
    platform_dir, url, prefix, idle = sys.argv[1:5]
    platform = Platform.open(Config.embedded(platform_dir))
    bus = connect(url, subject_prefix=prefix) if url.startswith("nats") else connect(url)

    def to_row(event: Event) -> dict:
        if event.data.get("die"):
            os._exit(3)
        if event.data.get("poison"):
            raise RuntimeError(f"poison order {event.data['order_id']}")
        time.sleep(0.0005)  # slow enough that a kill lands mid-batch
        return event.data

    sink = DatasetSink(platform.session("worker"), "app.fault_orders", to_row=to_row)
    consumer = sink_consumer(
        bus, "orders", "sinkers", sink,
        dead_letters=DeadLetterStore.for_platform(platform),
        retry=RetryPolicy(max_attempts=2, base=0.01, max_delay=0.05),
        batch_size=100,
        ack_wait=2.0,
    )
    print("ready", flush=True)
    consumer.run(idle_timeout=float(idle))
    consumer.close()
    bus.close()
    platform.close()


if __name__ == "__main__":
    main()
