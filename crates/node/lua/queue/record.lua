-- Shared by the queue's writing scripts (spliced in after `clock_lua!`). Their KEYS start with
-- the queue's keys: [1] rec, [2] pay, [3] ready, [4] gone, [5] purged.
--
-- `merge_item` is the join of `queue/record.rs` (`Record::merge`): the record greatest by
-- (rank, fence, stamp) wins, rank 0 for ready/leased, 1 for dead, 2 for acked; deliveries is
-- the max of both. The ready index and the payload follow the result.
--
-- The purge log (`purged`, a sorted set: id -> this node's clock in ms) notes every acked
-- item whose record left the node (purged once every node held its tombstone, or dropped past
-- the tombstone TTL) for `window` ms. A sweep restoring a queue onto this node skips the ids
-- it lists: a live copy read elsewhere before the purge is stale (restore.lua).
local function parse(r)
  local s, f, st, d, nb, p = string.match(r, '^(%a)|(%d+)|(%x*)|(%d+)|(%d+)|(%-?%d+)$')
  if not s then return nil end
  return {s = s, f = tonumber(f), st = st, d = tonumber(d), nb = nb, p = p}
end
local rank = {r = 0, l = 0, x = 1, a = 2}
local function less(a, b)
  if rank[a.s] ~= rank[b.s] then return rank[a.s] < rank[b.s] end
  if a.f ~= b.f then return a.f < b.f end
  return a.st < b.st
end
-- Merges the parsed record `inc` (and `payload`, '' = none) into item `id`; an acked result's
-- tombstone counts from `acked_at` unless it has a time already. Returns the stored record
-- and whether the node's copy changed.
local function merge_item(id, inc, payload, acked_at)
  local cur_raw = redis.call('HGET', KEYS[1], id)
  local cur = cur_raw and parse(cur_raw)
  local out = inc
  if cur then
    local d = math.max(inc.d, cur.d)
    if less(inc, cur) then out = cur end
    out = {s = out.s, f = out.f, st = out.st, d = d, nb = out.nb, p = out.p}
  end
  local enc = out.s .. '|' .. string.format('%.0f', out.f) .. '|' .. out.st .. '|' ..
    string.format('%.0f', out.d) .. '|' .. out.nb .. '|' .. out.p
  local changed = enc ~= cur_raw
  redis.call('HSET', KEYS[1], id, enc)
  if out.s == 'a' then
    redis.call('ZREM', KEYS[3], id)
    redis.call('HDEL', KEYS[2], id)
    redis.call('ZADD', KEYS[4], 'NX', acked_at, id)
  else
    if out.s == 'x' then
      redis.call('ZREM', KEYS[3], id)
    else
      redis.call('ZADD', KEYS[3], -tonumber(out.p), id)
    end
    if payload ~= '' and redis.call('HEXISTS', KEYS[2], id) == 0 then
      redis.call('HSET', KEYS[2], id, payload)
      changed = true
    end
  end
  return enc, changed
end
-- Notes that item `id`'s record left this node, and forgets what is older than `window` ms.
-- The log expires with its last entry, so an idle queue keeps none.
local function log_purge(id, window)
  local t = clock()
  redis.call('ZADD', KEYS[5], t, id)
  redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', '(' .. string.format('%d', t - window))
  redis.call('PEXPIRE', KEYS[5], window)
end
-- Drops a few tombstones older than `ttl` ms at `now`.
local function drop_old_tombstones(now, ttl, window)
  local old = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now - ttl, 'LIMIT', 0, 16)
  for _, o in ipairs(old) do
    local r = redis.call('HGET', KEYS[1], o)
    if r and string.sub(r, 1, 1) == 'a' then
      redis.call('HDEL', KEYS[1], o)
      log_purge(o, window)
    end
    redis.call('ZREM', KEYS[4], o)
  end
end
