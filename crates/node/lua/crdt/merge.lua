
local key, mkey, skey = KEYS[2], KEYS[3], KEYS[4]
local bucket, sub, kind, want = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local cur = redis.call('HGET', mkey, key)
if cur and entry_kind(cur) ~= kind then
  return {4, cur, {}}
end
local kp = crdt_key_part(key)
local function fh(f, v)
  return crdt_field_hash(kp, f, v)
end
-- Byte-wise order: Lua's own string comparison follows the server's locale.
local function greater(a, b)
  for i = 1, math.min(#a, #b) do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x > y end
  end
  return #a > #b
end
local old_hash = 0
local hash = fh('', kind)
if cur then
  old_hash = entry_hash(cur)
  hash = old_hash
end
local changed = false
-- `want` = 'h' recomputes the entry hash from the state as it stands, and rebuilds the value:
-- the state was changed outside quorumd, so the stored hash no longer sums its fields.
if want == 'h' and cur then
  hash = crdt_state_hash(kp, kind, skey)
  changed = true
end
local function put(f, old, v)
  if old then hash = (hash - fh(f, old)) % M end
  redis.call('HSET', skey, f, v)
  hash = (hash + fh(f, v)) % M
  changed = true
end
local function drop(f)
  local old = redis.call('HGET', skey, f)
  if old then
    redis.call('HDEL', skey, f)
    hash = (hash - fh(f, old)) % M
    changed = true
  end
end
for i = 5, OWN_ARGS - 1, 2 do
  local f, v = ARGV[i], ARGV[i + 1]
  local old = redis.call('HGET', skey, f)
  if kind == 'S' then
    local tag = string.sub(f, 3)
    if string.sub(f, 1, 1) == 'r' then
      if not old then
        put(f, nil, v)
        drop('a:' .. tag)
      end
    elseif redis.call('HEXISTS', skey, 'r:' .. tag) == 0 and (not old or greater(v, old)) then
      put(f, old, v)
    end
  elseif not old or greater(v, old) then
    put(f, old, v)
  end
end
-- `want` = 'r' rebuilds the materialised value from the state even when nothing merged: it
-- was changed outside quorumd.
if not changed and not (want == 'r' and cur) then
  if not cur then return {0, false, {}} end
  if want == '1' then return {0, cur, redis.call('HGETALL', skey)} end
  return {0, cur, {}}
end
local state = redis.call('HGETALL', skey)
own_begin()
redis.call('DEL', key)
if kind == 'C' then
  -- Exact sums of 20-digit totals, digit column by digit column: doubles cannot hold them.
  local function sums(letter)
    local acc = {}
    for j = 1, 20 do acc[j] = 0 end
    for i = 1, #state, 2 do
      if string.sub(state[i], 1, 1) == letter then
        local v = state[i + 1]
        for j = 1, 20 do acc[j] = acc[j] + string.byte(v, 21 - j) - 48 end
      end
    end
    local carry, j = 0, 1
    while j <= #acc or carry > 0 do
      local t = (acc[j] or 0) + carry
      acc[j] = t % 10
      carry = math.floor(t / 10)
      j = j + 1
    end
    return acc
  end
  local function cmp(a, b)
    for j = math.max(#a, #b), 1, -1 do
      local x, y = a[j] or 0, b[j] or 0
      if x ~= y then return x > y and 1 or -1 end
    end
    return 0
  end
  local function minus(a, b)
    local out, borrow = {}, 0
    for j = 1, #a do
      local t = a[j] - (b[j] or 0) - borrow
      if t < 0 then t, borrow = t + 10, 1 else borrow = 0 end
      out[j] = t
    end
    local top = #out
    while top > 1 and out[top] == 0 do top = top - 1 end
    local s = {}
    for j = top, 1, -1 do s[#s + 1] = string.char(48 + out[j]) end
    return table.concat(s)
  end
  local p, n = sums('p'), sums('n')
  local value
  if cmp(p, n) >= 0 then value = minus(p, n) else value = '-' .. minus(n, p) end
  redis.call('SET', key, value)
else
  -- Sets and maps are rebuilt from the state, which also restores a value deleted behind
  -- quorumd's back.
  local args = {}
  for i = 1, #state, 2 do
    local f, v = state[i], state[i + 1]
    if kind == 'S' and string.sub(f, 1, 1) == 'a' then
      args[#args + 1] = v
    elseif kind == 'M' and string.sub(v, 35, 35) == '=' then
      args[#args + 1] = string.sub(f, 3)
      args[#args + 1] = string.sub(v, 36)
    end
    if #args >= 512 then
      redis.call(kind == 'S' and 'SADD' or 'HSET', key, unpack(args))
      args = {}
    end
  end
  if #args > 0 then redis.call(kind == 'S' and 'SADD' or 'HSET', key, unpack(args)) end
end
-- A CRDT entry's version is its hash (ms and counter 0, the hash as the writer id).
local version = struct.pack('>I6I3I4I4', 0, 0, math.floor(hash / 4294967296), hash % 4294967296)
local meta = entry_pack(version, kind, hash, content_of(key), 0)
redis.call('HSET', mkey, key, meta)
add_digest(KEYS[1], bucket, hash - old_hash)
add_digest(KEYS[5], sub, hash - old_hash)
if want == '1' then return {1, meta, state} end
return {1, meta, {}}
