
local out = {}
-- Digest deltas, accumulated per field and applied once: digest key -> bucket's digest field
-- (empty for a string key, see `add_digest`) -> delta, and sub-digest hash -> sub-bucket -> delta.
local deltas, sub_deltas = {}, {}
local function add_delta(acc, hash, field, delta)
  local fields = acc[hash] or {}
  acc[hash] = fields
  fields[field] = ((fields[field] or 0) + delta) % M
end
local crdt_kinds = {C = true, S = true, M = true}
-- redis.pcall: a command that fails (a RESTORE of a bad payload) fails only its own entry,
-- whose error text, in a one-item array, takes the place of its code (a nested error reply
-- would fail the whole call on the client); the other entries of the batch still apply.
-- `expiry_text` is the expiry as it came in: passed to Redis as is, since a Lua number above
-- 2^53 would be printed in exponent form, which Redis refuses as an integer.
local function store_value(key, mode, payload, expiry, expiry_text)
  own_begin()
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
  local want = entry_content(meta)
  if content_of(key, string.sub(want, 1, 1)) ~= want then return true end
  local at = redis.call('PEXPIRETIME', key)
  if at < 0 then at = 0 end
  return at ~= expiry
end
local function failed(reply)
  return type(reply) == 'table' and reply.err ~= nil
end
for i = 0, #KEYS / 4 - 1 do
  local key, mkey, dkey, skey = KEYS[1 + 4 * i], KEYS[2 + 4 * i], KEYS[3 + 4 * i], KEYS[4 + 4 * i]
  local a = 7 * i
  local bucket, sub, meta, mode = ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4]
  local payload, expiry, cond = ARGV[a + 5], tonumber(ARGV[a + 6]), ARGV[a + 7]
  local version = entry_version(meta)
  local cur = redis.call('HGET', mkey, key)
  local code, cur_hash = 1, 0
  -- `#` before the condition: the accept of a read-modify-write whose ballot (the entry's
  -- version) `prepare.lua` promised. A node that promised a higher ballot since refuses it.
  -- Told apart by length: a bare condition is '', '-' or a 17-byte version.
  local pkey, promised
  if (#cond == 2 or #cond == 18) and string.byte(cond, 1) == 35 then
    cond = string.sub(cond, 2)
    pkey = promise_key(mkey, key)
    promised = redis.call('GET', pkey)
  end
  if promised and version_after(promised, version) then
    code = 5
  elseif cur then
    local cur_version = entry_version(cur)
    if crdt_kinds[entry_kind(cur)] then
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
    elseif cond == '-' or (cond ~= '' and version_after(cur_version, cond)) then
      -- A conditional write that finds anything newer than it expected has lost, even when
      -- that is older than itself: else two concurrent compare-and-sets could both win.
      code = 2
    elseif version_after(cur_version, version) then
      code = 0
    else
      cur_hash = entry_hash(cur)
    end
  end
  if code == 1 then
    local reply = store_value(key, mode, payload, expiry, ARGV[a + 6])
    if failed(reply) then code = reply end
  end
  -- This writer's promise has done its work here, and a lower one is moot once this version
  -- is stored: it refuses every lower ballot's accept by its condition alone.
  if promised and (promised == version or (code == 1 and version_after(version, promised))) then
    redis.call('DEL', pkey)
  end
  if code == 1 then
    redis.call('HSET', mkey, key, meta)
    local new_hash = entry_hash(meta)
    -- Reduced at every step so the sum stays exact in a double.
    add_delta(deltas, dkey, bucket, new_hash - cur_hash)
    add_delta(sub_deltas, skey, sub, new_hash - cur_hash)
    out[#out + 1] = 1
    out[#out + 1] = ''
  elseif code == 5 then
    out[#out + 1] = 5
    out[#out + 1] = promised
  elseif failed(code) then
    out[#out + 1] = {code.err}
    out[#out + 1] = ''
  else
    out[#out + 1] = code
    out[#out + 1] = cur
  end
end
-- One digest update per bucket and per sub-bucket touched, not per entry.
for _, acc in ipairs({deltas, sub_deltas}) do
  for hash, fields in pairs(acc) do
    for field, delta in pairs(fields) do
      add_digest(hash, field, delta)
    end
  end
end
return out
