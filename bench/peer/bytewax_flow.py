"""Bytewax peer for the CityBrain benchmark.

Reads CityBrain telemetry JSON ({"v":1,"readings":[...]}, one or many readings per message) from MQTT
(QoS 1, clean session off, paho-mqtt), and computes per device and 1-minute tumbling event-time window
the reading count and the mean of `v_rms_v` (grid_summary readings), with the same allowed lateness as
CityBrain (the EventClock waits `BENCH_LATENESS_MS` of event time). Window results go to stdout, one line
each: `W <device> <window_start_ms> <count> <mean_v_rms_v>`. `READY` is printed once subscribed.

Environment: BENCH_HOST, BENCH_PORT, BENCH_CLIENT_ID, BENCH_LATENESS_MS, BENCH_WINDOW_MS.
Run: `python bench/peer/bytewax_flow.py` (single worker, as `bytewax.run` with -w 1 would).

Note: paho acknowledges a QoS 1 message when `on_message` returns, i.e. on receipt, not after the
window state is durable (Bytewax recovery is not enabled) — weaker than CityBrain's ack after write.
"""

import json
import os
import sys
import threading
from collections import deque
from datetime import datetime, timedelta, timezone

import paho.mqtt.client as mqtt
import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import DynamicSource, StatelessSourcePartition
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.operators.windowing import EventClock, TumblingWindower, fold_window

HOST = os.environ.get("BENCH_HOST", "127.0.0.1")
PORT = int(os.environ.get("BENCH_PORT", "1883"))
CLIENT_ID = os.environ.get("BENCH_CLIENT_ID", "bench-bytewax")
LATENESS_MS = int(os.environ.get("BENCH_LATENESS_MS", "10000"))
WINDOW_MS = int(os.environ.get("BENCH_WINDOW_MS", "60000"))
FILTERS = [
    "citybrain/v1/+/grid/+/telemetry",
    "citybrain/v1/gateway/+/batch",
]
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class _MqttPartition(StatelessSourcePartition):
    def __init__(self):
        self._queue = deque()
        self._wake = threading.Event()
        c = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=CLIENT_ID, clean_session=False
        )
        c.max_inflight_messages_set(20)
        c.on_connect = self._on_connect
        c.on_subscribe = self._on_subscribe
        c.on_message = self._on_message
        self._client = c
        self._subs_left = len(FILTERS)
        c.connect(HOST, PORT, keepalive=30)
        c.loop_start()

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if not flags.session_present:
            for f in FILTERS:
                client.subscribe(f, qos=1)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        self._subs_left -= 1
        if self._subs_left == 0:
            print("READY", flush=True)

    def _on_message(self, client, userdata, msg):
        self._queue.append(msg.payload)
        self._wake.set()

    def next_batch(self):
        # Hand Bytewax batches, not single items (its per-batch overhead is large): wait up to 5 ms
        # for more messages while fewer than 500 are queued.
        if len(self._queue) < 500:
            self._wake.wait(0.005)
            self._wake.clear()
        out = []
        q = self._queue
        n = 0
        while q and n < 2000:
            payload = q.popleft()
            n += 1
            try:
                msg = json.loads(payload)
                for r in msg["readings"]:
                    d = r["data"]
                    if d.get("type") == "grid_summary":
                        out.append((r["device"], r["ts_ms"], d["v_rms_v"]))
            except (ValueError, KeyError, TypeError):
                continue
        return out

    def close(self):
        self._client.loop_stop()
        self._client.disconnect()


class MqttSource(DynamicSource):
    def build(self, step_id, worker_index, worker_count):
        return _MqttPartition()


class _StdoutPartition(StatelessSinkPartition):
    def write_batch(self, items):
        lines = []
        for device, (wid, (count, vsum)) in items:
            start_ms = wid * WINDOW_MS
            lines.append(f"W {device} {start_ms} {count} {vsum / count!r}\n")
        sys.stdout.write("".join(lines))
        sys.stdout.flush()


class StdoutSink(DynamicSink):
    def build(self, step_id, worker_index, worker_count):
        return _StdoutPartition()


def _folder(acc, r):
    return (acc[0] + 1, acc[1] + r[2])


def _merger(a, b):
    return (a[0] + b[0], a[1] + b[1])


flow = Dataflow("citybrain_peer")
readings = op.input("mqtt", flow, MqttSource())
keyed = op.key_on("by_device", readings, lambda r: r[0])
clock = EventClock(
    ts_getter=lambda r: EPOCH + timedelta(milliseconds=r[1]),
    wait_for_system_duration=timedelta(milliseconds=LATENESS_MS),
)
windower = TumblingWindower(length=timedelta(milliseconds=WINDOW_MS), align_to=EPOCH)
wo = fold_window("per_minute", keyed, clock, windower, lambda: (0, 0.0), _folder, _merger)
op.output("out", wo.down, StdoutSink())

if __name__ == "__main__":
    from bytewax.run import cli_main

    cli_main(flow, workers_per_process=1)
