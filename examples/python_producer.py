#!/usr/bin/env python3
"""Publish jobfleet jobs to RabbitMQ from Python, in the JSON wire format.

A producer in another language talks to the broker directly; this script does it the way
docs/wire-format.md ("Publishing from another language over AMQP") says:

- the ready queue of `QUEUE` is `NAMESPACE.q.QUEUE`: durable, with `x-max-priority` = 9,
  declared with exactly those arguments (different ones make RabbitMQ refuse the
  declaration with PRECONDITION_FAILED);
- each job is one JSON object with `v`, a fresh UUID v7 `id`, `queue`, `kind`,
  `priority`, `enqueued_at_ms` and, when given, `payload`;
- it goes through the default exchange with the queue name as routing key, `mandatory`,
  persistent (`delivery_mode` 2), `content_type` `application/json` and the job's priority
  as the message priority, and the script waits for the broker's confirm;
- a job due later (`--delay`) carries `run_at_ms` and goes to the delayed route instead,
  the queue `NAMESPACE.delayed` (durable, no arguments), for a scheduler to release to its
  ready queue when due;
- `--traceparent` (default: the TRACEPARENT environment variable) puts the caller's W3C
  trace context in `trace`, so the job's spans join the caller's trace.

It prints the id of each job once the broker has confirmed it, one per line, so a caller
can follow the jobs with `jobfleet status ID`.

Going around the Rust producer skips its checks: a job that breaks a limit (say, an
out-of-range priority) is not refused here but dead-lettered by the worker, `unique_key`
is not deduplicated, and no `pending` record is written.

Needs `pika` (pip install pika). Example:

    python3 examples/python_producer.py --queue emails --kind send \\
        --payload '{"to": "ada@example.com"}' --priority high --count 3

The functions are importable too: `make_job` builds a job, `connect` opens a confirming
channel, `publish` sends jobs on it.
"""

import argparse
import json
import os
import sys
import time
import uuid

import pika

WIRE_VERSION = 1
CONTENT_TYPE = "application/json"
PERSISTENT = 2
MAX_PRIORITY = 9
# The names `jobfleet enqueue --priority` accepts.
PRIORITY_NAMES = {"low": 0, "normal": 3, "high": 6, "critical": 9}


def queue_name(namespace, queue):
    """The RabbitMQ queue that holds the ready jobs of `queue`."""
    return f"{namespace}.q.{queue}"


def delayed_queue_name(namespace):
    """The RabbitMQ queue of the delayed route: jobs due later, for the scheduler."""
    return f"{namespace}.delayed"


def new_job_id():
    """A UUID v7: 48 bits of Unix milliseconds, then random bits, so ids sort by time.

    Python's `uuid` module makes v7 ids only from 3.14 on, hence the bit layout by hand.
    """
    millis = time.time_ns() // 1_000_000
    value = (millis & (2**48 - 1)) << 80 | int.from_bytes(os.urandom(10), "big")
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version 7
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # RFC 9562 variant
    return str(uuid.UUID(int=value))


def make_job(
    queue, kind, payload=None, priority=PRIORITY_NAMES["normal"], delay_s=None, traceparent=None
):
    """One job in the JSON form; fields left out take the defaults of the wire format.

    `payload` is any JSON value (None for no payload); the handler receives its text as
    written in the message. `delay_s` makes it due that many seconds from now;
    `traceparent` is the caller's W3C trace context.
    """
    job = {
        "v": WIRE_VERSION,
        "id": new_job_id(),
        "queue": queue,
        "kind": kind,
        "priority": priority,
        "enqueued_at_ms": time.time_ns() // 1_000_000,
    }
    if payload is not None:
        job["payload"] = payload
    if delay_s:
        job["run_at_ms"] = job["enqueued_at_ms"] + int(delay_s * 1000)
    if traceparent:
        job["trace"] = {"traceparent": traceparent}
    return job


def connect(amqp_url):
    """A connection and a channel in confirm mode, so each publish waits for its confirm."""
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    channel = connection.channel()
    channel.confirm_delivery()
    return connection, channel


def declare(channel, namespace, queue):
    """Declares the ready queue and the delayed route's queue with the arguments jobfleet
    itself uses; returns the ready queue's name."""
    name = queue_name(namespace, queue)
    channel.queue_declare(queue=name, durable=True, arguments={"x-max-priority": MAX_PRIORITY})
    channel.queue_declare(queue=delayed_queue_name(namespace), durable=True)
    return name


def is_delayed(job):
    """Whether the job is due later than now: it goes to the delayed route."""
    return job.get("run_at_ms", 0) > time.time_ns() // 1_000_000


def publish(channel, namespace, job):
    """Publishes one job (a dict) to its queue's ready route, or to the delayed route when
    it is due later, and waits for the confirm.

    Raises `pika.exceptions.UnroutableError` if the queue does not exist (the message is
    `mandatory`) and `pika.exceptions.NackError` if the broker refuses it.
    """
    channel.basic_publish(
        exchange="",
        routing_key=(
            delayed_queue_name(namespace) if is_delayed(job) else queue_name(namespace, job["queue"])
        ),
        body=json.dumps(job).encode("utf-8"),
        properties=pika.BasicProperties(
            content_type=CONTENT_TYPE,
            delivery_mode=PERSISTENT,
            # The broker orders by this property; the field is what a retry keeps.
            priority=job.get("priority", PRIORITY_NAMES["normal"]),
        ),
        mandatory=True,
    )


def parse_priority(text):
    """A priority from the command line: 0-9 or low, normal, high, critical."""
    if text in PRIORITY_NAMES:
        return PRIORITY_NAMES[text]
    try:
        level = int(text)
    except ValueError:
        level = -1
    if not 0 <= level <= MAX_PRIORITY:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not 0-{MAX_PRIORITY} nor one of {', '.join(PRIORITY_NAMES)}"
        )
    return level


def parse_payload(text):
    """The payload from the command line: any JSON text."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not JSON: {e}") from e


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--amqp-url",
        default="amqp://guest:guest@127.0.0.1:5672/%2f",
        help="RabbitMQ URL (default: %(default)s)",
    )
    parser.add_argument(
        "--namespace", default="jobfleet", help="jobfleet namespace (default: %(default)s)"
    )
    parser.add_argument("--queue", required=True, help="the queue the jobs run on")
    parser.add_argument("--kind", required=True, help="the handler that runs them")
    parser.add_argument("--count", type=int, default=1, help="how many jobs (default: %(default)s)")
    parser.add_argument("--payload", type=parse_payload, help="the payload of every job, as JSON")
    parser.add_argument(
        "--priority",
        type=parse_priority,
        default=PRIORITY_NAMES["normal"],
        help="0-9 or low, normal, high, critical (default: normal)",
    )
    parser.add_argument(
        "--delay",
        type=float,
        help="seconds from now before the jobs may run (they wait on the delayed route)",
    )
    parser.add_argument(
        "--traceparent",
        default=os.environ.get("TRACEPARENT"),
        help="the caller's W3C traceparent (default: $TRACEPARENT)",
    )
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error("--count must be at least 1")
    if args.delay is not None and args.delay < 0:
        parser.error("--delay must not be negative")
    return args


def main(argv=None):
    args = parse_args(argv)
    connection, channel = connect(args.amqp_url)
    try:
        declare(channel, args.namespace, args.queue)
        for _ in range(args.count):
            job = make_job(
                args.queue, args.kind, args.payload, args.priority, args.delay, args.traceparent
            )
            publish(channel, args.namespace, job)
            # Printed only once confirmed: every id printed is a job the broker holds.
            print(job["id"], flush=True)
    finally:
        connection.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
