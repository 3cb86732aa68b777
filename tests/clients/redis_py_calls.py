"""Common redis-py calls against quorumd's Redis-protocol port, unchanged (issue 19).

Usage: python redis_py_calls.py PORT KEY_PREFIX

Each check names the call it makes; the first one that misbehaves is printed as
`FAILED <call>: <why>` and the script exits 1. On success it prints `ok <n> calls`.
Run by tests/resp_clients.rs with the venv of scripts/ensure-deploy-venv.sh.
"""

import sys

import redis
from redis.exceptions import ResponseError

port, prefix = int(sys.argv[1]), sys.argv[2]
r = redis.Redis(host="127.0.0.1", port=port, socket_timeout=30)
checked = 0


def k(name):
    return prefix + name


def check(call, got, want):
    """Fails the script, naming `call`, unless `got` equals `want`."""
    global checked
    if got != want:
        print(f"FAILED {call}: got {got!r}, want {want!r}")
        sys.exit(1)
    checked += 1


def run(call, fn, want):
    try:
        got = fn()
    except Exception as e:  # noqa: BLE001 - any exception is this call's failure
        print(f"FAILED {call}: raised {type(e).__name__}: {e}")
        sys.exit(1)
    check(call, got, want)


# Strings, counters, expiry, delete.
run("ping()", lambda: r.ping(), True)
run("set(s, 'v')", lambda: r.set(k("s"), "v"), True)
run("get(s)", lambda: r.get(k("s")), b"v")
run("set(s, 'w', nx=True)", lambda: r.set(k("s"), "w", nx=True), None)
run("set(n, 10)", lambda: r.set(k("n"), 10), True)
run("incr(n)", lambda: r.incr(k("n")), 11)
run("incrby(n, 5)", lambda: r.incrby(k("n"), 5), 16)
run("decr(n)", lambda: r.decr(k("n")), 15)
run("expire(n, 100)", lambda: r.expire(k("n"), 100), True)
run("0 < ttl(n) <= 100", lambda: 0 < r.ttl(k("n")) <= 100, True)
run("persist(n)", lambda: r.persist(k("n")), True)
run("ttl(n)", lambda: r.ttl(k("n")), -1)
run("set(e, 'x', ex=100)", lambda: r.set(k("e"), "x", ex=100), True)
run("getex(e, persist=True)", lambda: r.getex(k("e"), persist=True), b"x")
run("mset({m1, m2})", lambda: r.mset({k("m1"): "1", k("m2"): "2"}), True)
run("mget(m1, m2, missing)", lambda: r.mget(k("m1"), k("m2"), k("missing")), [b"1", b"2", None])
run("append(s, 'x')", lambda: r.append(k("s"), "x"), 2)
run("exists(s, n, missing)", lambda: r.exists(k("s"), k("n"), k("missing")), 2)
run("delete(s, n)", lambda: r.delete(k("s"), k("n")), 2)
run("get(s) after delete", lambda: r.get(k("s")), None)
run("type(m1)", lambda: r.type(k("m1")), b"string")

# Hashes.
run("hset(h, mapping)", lambda: r.hset(k("h"), mapping={"a": "1", "b": "2"}), 2)
run("hset(h, 'c', '3')", lambda: r.hset(k("h"), "c", "3"), 1)
run("hgetall(h)", lambda: r.hgetall(k("h")), {b"a": b"1", b"b": b"2", b"c": b"3"})
run("hget(h, 'a')", lambda: r.hget(k("h"), "a"), b"1")
run("hincrby(h, 'a', 4)", lambda: r.hincrby(k("h"), "a", 4), 5)
run("hdel(h, 'b')", lambda: r.hdel(k("h"), "b"), 1)
run("hlen(h)", lambda: r.hlen(k("h")), 2)

# Sets.
run("sadd(st, a, b, c)", lambda: r.sadd(k("st"), "a", "b", "c"), 3)
run("smembers(st)", lambda: r.smembers(k("st")), {b"a", b"b", b"c"})
run("sismember(st, 'b')", lambda: r.sismember(k("st"), "b"), True)
run("srem(st, 'b')", lambda: r.srem(k("st"), "b"), 1)
run("scard(st)", lambda: r.scard(k("st")), 2)

# Lists.
run("rpush(l, a, b, c)", lambda: r.rpush(k("l"), "a", "b", "c"), 3)
run("lpush(l, z)", lambda: r.lpush(k("l"), "z"), 4)
run("lrange(l, 0, -1)", lambda: r.lrange(k("l"), 0, -1), [b"z", b"a", b"b", b"c"])
run("lpop(l)", lambda: r.lpop(k("l")), b"z")
run("rpop(l, 2)", lambda: r.rpop(k("l"), 2), [b"c", b"b"])
run("llen(l)", lambda: r.llen(k("l")), 1)

# Sorted sets.
run("zadd(z, {a: 1, b: 2, c: 3})", lambda: r.zadd(k("z"), {"a": 1, "b": 2, "c": 3}), 3)
run("zincrby(z, 5, 'a')", lambda: r.zincrby(k("z"), 5, "a"), 6.0)
run(
    "zrange(z, 0, -1, withscores=True)",
    lambda: r.zrange(k("z"), 0, -1, withscores=True),
    [(b"b", 2.0), (b"c", 3.0), (b"a", 6.0)],
)
run("zscore(z, 'c')", lambda: r.zscore(k("z"), "c"), 3.0)
run("zrank(z, 'a')", lambda: r.zrank(k("z"), "a"), 2)
run("zrangebyscore(z, 2, 3)", lambda: r.zrangebyscore(k("z"), 2, 3), [b"b", b"c"])
run("zpopmin(z)", lambda: r.zpopmin(k("z")), [(b"b", 2.0)])
run("zcard(z)", lambda: r.zcard(k("z")), 2)

# A transaction applies all of its commands and answers each.
def transaction():
    p = r.pipeline(transaction=True)
    p.set(k("t1"), "a").incr(k("t2")).rpush(k("t3"), "x", "y").hset(k("t4"), "f", "v")
    return p.execute()


run("pipeline(transaction=True).execute()", transaction, [True, 1, 2, 1])
run(
    "the transaction's writes",
    lambda: [r.get(k("t1")), r.get(k("t2")), r.lrange(k("t3"), 0, -1), r.hget(k("t4"), "f")],
    [b"a", b"1", [b"x", b"y"], b"v"],
)


# A refused transaction applies none of its commands: redis-py sends it whole, the unknown
# command is refused while queueing, and EXEC answers EXECABORT.
def refused_transaction():
    p = r.pipeline(transaction=True)
    p.set(k("never"), "v").execute_command("NOSUCHCOMMAND", "x")
    try:
        p.execute()
    except ResponseError as e:
        return "aborted" if "EXECABORT" in str(e) or "unknown command" in str(e) else str(e)
    return "executed"


run("pipeline(transaction=True) with an unknown command", refused_transaction, "aborted")
run("exists(never) after the refused transaction", lambda: r.exists(k("never")), 0)

# A plain (non-transactional) pipeline.
def pipeline():
    p = r.pipeline(transaction=False)
    p.set(k("p1"), "1").get(k("p1")).incr(k("p1"))
    return p.execute()


run("pipeline(transaction=False).execute()", pipeline, [True, b"1", 2])

# scan_iter returns every key (each once).
wanted = {k(f"scan:{i}").encode() for i in range(30)}
for key in wanted:
    r.set(key, "x")
run("scan_iter(match=prefix+'scan:*')", lambda: set(r.scan_iter(match=k("scan:*"), count=100)), wanted)
run(
    "scan_iter has no duplicates",
    lambda: len(list(r.scan_iter(match=k("scan:*"), count=7))),
    len(wanted),
)
run("keys(prefix+'scan:*')", lambda: set(r.keys(k("scan:*"))), wanted)


# Pub/sub: a subscriber's confirmations, PUBLISH's counts, and each message once, by channel
# and by pattern.
def next_message(ps, timeout=10):
    msg = ps.get_message(timeout=timeout)
    return None if msg is None else (msg["type"], msg["channel"], msg["data"])


def pubsub():
    ps = r.pubsub()
    ps.subscribe(k("chan"))
    ps.psubscribe(k("pat:*"))
    confirmations = [next_message(ps), next_message(ps)]
    counts = [
        r.publish(k("chan"), "hello"),
        r.publish(k("pat:1"), "world"),
        r.publish(k("nobody"), "lost"),
    ]
    # Messages through different nodes may come in either order.
    messages = sorted([next_message(ps), next_message(ps)], key=repr)
    # Every node carries a copy: none may come a second time.
    again = next_message(ps, timeout=1)
    ps.close()
    return confirmations, counts, messages, again


run(
    "pubsub(): subscribe, psubscribe, publish, get_message",
    pubsub,
    (
        [("subscribe", k("chan").encode(), 1), ("psubscribe", k("pat:*").encode(), 2)],
        [1, 1, 0],
        sorted(
            [("message", k("chan").encode(), b"hello"), ("pmessage", k("pat:1").encode(), b"world")],
            key=repr,
        ),
        None,
    ),
)


# Lock: redis-py's Lock releases and extends through Lua scripts (EVALSHA), which quorumd
# refuses. Acquiring is a plain SET NX PX; the release must fail with quorumd's clear error.
def lock():
    lk = r.lock(k("lock"), timeout=10)
    acquired = lk.acquire(blocking=False)
    try:
        lk.release()
    except ResponseError as e:
        return (acquired, str(e))
    return (acquired, "released")


def lock_error():
    acquired, outcome = lock()
    if not acquired:
        return "not acquired"
    # What the user sees, for the test to check word for word.
    print(f"Lock.release() refused: {outcome}")
    return "scripts refused" if "is not supported by quorumd" in outcome else outcome


run("Lock(timeout=10).acquire() then .release()", lock_error, "scripts refused")

print(f"ok {checked} calls")
