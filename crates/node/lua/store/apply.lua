
local out = {}
-- Digest deltas, accumulated per field and applied once: bucket -> delta, and
-- sub-digest hash -> sub-bucket -> delta.
local deltas, sub_deltas = {}, {}
local crdt_kinds = {C = true, S = true, M = true}
-- redis.pcall: a command that fails (a RESTORE of a bad payload) fails only its own entry,
-- whose error text, in a one-item array, takes the place of its code (a nested error reply
-- would fail the whole call on the client); the other entries of the batch still apply.
-- `expiry_text` is the expiry as it came in: passed to Redis as is, since a Lua number above
-- 2^53 would be printed in exponent form, which Redis refuses as an integer.
local function store_value(key, mode, payload, expiry, expiry_text)
  if mode == 't' or (mode == 'r' and payload == '') or (expiry > 0 and expiry <= clock()) then
    return redis.pcall('DEL', key)
  elseif mode == 'r' then
    return redis.pcall('RESTORE', key, expiry_text, payload, 'REPLACE', 'ABSTTL')
  elseif expiry > 0 then
    return redis.pcall('SET', key, payload, 'PXAT', expiry_text)
  else
    return redis.pcall('SET', key, payload)
  end
end
-- True when the value under `key` is not the one the entry `meta` records: absent though live,
-- present under a tombstone, or of another content or expiry.
local function value_differs(key, meta, mode, expiry)
  local live = expiry == 0 or expiry > clock()
  if redis.call('EXISTS', key) == 0 then return mode == 'r' and live end
  -- A value under a tombstone, or past the expiry its metadata records, was written or had
  -- its TTL changed outside quorumd; store_value deletes it.
  if mode == 't' or not live then return true end
  local want = string.match(meta, '^[^|]*|[^|]*|[^|]*|([^|]*)|')
  if content_of(key) ~= want then return true end
  local at = redis.call('PEXPIRETIME', key)
  if at < 0 then at = 0 end
  return at ~= expiry
end
local function failed(reply)
  return type(reply) == 'table' and reply.err ~= nil
end
for i = 0, (#KEYS - 1) / 3 - 1 do
  local key, mkey, skey = KEYS[2 + 3 * i], KEYS[3 + 3 * i], KEYS[4 + 3 * i]
  local a = 7 * i
  local bucket, sub, meta, mode = ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4]
  local payload, expiry, cond = ARGV[a + 5], tonumber(ARGV[a + 6]), ARGV[a + 7]
  local version = string.sub(meta, 1, 34)
  local cur = redis.call('HGET', mkey, key)
  local code, cur_hash = 1, 0
  if cur then
    local cur_version = string.sub(cur, 1, 34)
    if crdt_kinds[string.sub(cur, 36, 36)] then
      code = 4
    elseif cur_version == version then
      -- A retry, or a repair that already landed. A repair of the same version (mode r) also
      -- puts back a value that vanished or was changed under its metadata (evicted, written
      -- behind quorumd's back), and one of a tombstone (mode t) deletes a value written over it.
      code = 0
      if (mode == 'r' or mode == 't') and value_differs(key, meta, mode, expiry) then
        local reply = store_value(key, mode, payload, expiry, ARGV[a + 6])
        code = failed(reply) and reply or 3
      end
    elseif cond == '-' or (cond ~= '' and cur_version > cond) then
      -- A conditional write that finds anything newer than it expected has lost, even when
      -- that is older than itself: else two concurrent compare-and-sets could both win.
      code = 2
    elseif cur_version > version then
      code = 0
    else
      cur_hash = tonumber(string.match(cur, "|(%d+)$")) or 0
    end
  end
  if code == 1 then
    local reply = store_value(key, mode, payload, expiry, ARGV[a + 6])
    if failed(reply) then code = reply end
  end
  if code == 1 then
    redis.call('HSET', mkey, key, meta)
    local new_hash = tonumber(string.match(meta, "|(%d+)$"))
    -- Reduced at every step so the sum stays exact in a double.
    deltas[bucket] = ((deltas[bucket] or 0) - cur_hash + new_hash) % M
    local subs = sub_deltas[skey] or {}
    sub_deltas[skey] = subs
    subs[sub] = ((subs[sub] or 0) - cur_hash + new_hash) % M
    out[#out + 1] = 1
    out[#out + 1] = ''
  elseif failed(code) then
    out[#out + 1] = {code.err}
    out[#out + 1] = ''
  else
    out[#out + 1] = code
    out[#out + 1] = cur
  end
end
-- One digest update per bucket and per sub-bucket touched, not per entry.
for bucket, delta in pairs(deltas) do
  add_digest(KEYS[1], bucket, delta)
end
for skey, subs in pairs(sub_deltas) do
  for sub, delta in pairs(subs) do
    add_digest(skey, sub, delta)
  end
end
return out
