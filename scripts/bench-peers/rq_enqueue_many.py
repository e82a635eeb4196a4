"""Peer benchmark: RQ batch-enqueue throughput against a given Redis.

Usage: scripts/bench-peers/.venv/bin/python scripts/bench-peers/rq_enqueue_many.py REDIS_URL N
  (the venv with rq from PyPI is made by scripts/bench-peers/setup)

Enqueues N jobs of "bench.noop" (an import path string: the module need not
exist, nothing runs the jobs), each with one small dict argument, in batches of
1,000: Queue.prepare_data for each job, then one Queue.enqueue_many per batch
(one Redis pipeline each). Only that is timed (monotonic wall clock); the
argument dicts are built and the connection opened before the clock starts.
Nothing is flushed: the caller gives a fresh Redis. Prints exactly one JSON line:
  {"peer":"rq","version":"3.0.0","jobs":N,"seconds":S,"jobs_per_s":R}
"""
import json
import sys
import time

import rq
from redis import Redis
from rq import Queue

BATCH = 1_000

if len(sys.argv) != 3 or not sys.argv[2].isdigit() or int(sys.argv[2]) <= 0:
    sys.exit(f"usage: {sys.argv[0]} REDIS_URL N")
url, n = sys.argv[1], int(sys.argv[2])

conn = Redis.from_url(url)
conn.ping()  # open the connection outside the timed part
q = Queue("default", connection=conn)
args = [{"repo": "demo", "task": "bench", "issue": i} for i in range(n)]

t0 = time.monotonic()
for start in range(0, n, BATCH):
    q.enqueue_many([Queue.prepare_data("bench.noop", args=(a,)) for a in args[start:start + BATCH]])
secs = time.monotonic() - t0

print(json.dumps({"peer": "rq", "version": rq.__version__, "jobs": n,
                  "seconds": round(secs, 6), "jobs_per_s": round(n / secs, 1)},
                 separators=(",", ":")))
