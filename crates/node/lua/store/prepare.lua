-- Phase one of a read-modify-write, CASPaxos's prepare (docs/ARCHITECTURE.md, "Read-modify-
-- writes across processes"): promises the ballot for the key unless a higher one was promised
-- here, and reads the key whole as READ_TYPED does. The accept is APPLY's `#` condition,
-- which a node refuses once it promised a higher ballot, so of two writers that read the
-- same version only the later ballot can write, and a refused write can never carry a
-- ballot above one that was acknowledged after it.
-- KEYS: the value key and its metadata hash. ARGV: the ballot (an encoded version, which
-- becomes the written version), the promise's lifetime in ms.
-- Returns {meta or false, value or false, the higher promise that refused this one or false}.
local key, mkey = KEYS[1], KEYS[2]
local ballot = ARGV[1]
local pkey = promise_key(mkey, key)
local promised = redis.call('GET', pkey)
-- A live promise to another writer (the last 8 bytes of a version name it) refuses this
-- one, lower or higher: a writer between its read and its write is never cut short by
-- another's read, which would make its write land on some nodes only and leave its outcome
-- unknown. Lower ballots are refused too, as Paxos asks. A promise lives until the write or
-- the release of its writer, or its lifetime if that writer is gone.
if promised and (version_after(promised, ballot) or string.sub(promised, 10) ~= string.sub(ballot, 10)) then
  return {false, false, promised}
end
redis.call('SET', pkey, ballot, 'PX', ARGV[2])
local meta, value = typed_read(key, mkey, true)
return {meta, value, false}
