#!lua flags=no-writes
-- The typed read (lists, sorted sets, and any key a typed command meets). KEYS: per key the
-- value key and its metadata hash. ARGV: per key `f` (the whole value of a string, a list or
-- a sorted set) or `y` (its type only). Returns per key the metadata (or false) and false
-- when there is no value, else {type} or, for `f`, {'string', value} / {'list', element, ...}
-- / {'zset', member, score, ...}: TYPE comes first, so a key of another type answers with its
-- name and the caller replies WRONGTYPE. A separate script
-- from READ, whose GET stays the whole cost of the string path.
local out = {}
local crdt_kinds = {C = true, S = true, M = true}
for i = 1, #KEYS, 2 do
  local key = KEYS[i]
  local meta = redis.call('HGET', KEYS[i + 1], key)
  local value = false
  -- A CRDT key's value is the CRDT store's to read; its metadata says enough.
  if not (meta and crdt_kinds[string.sub(meta, 36, 36)]) then
    local t = redis.call('TYPE', key)['ok']
    if t ~= 'none' then
      if ARGV[(i + 1) / 2] ~= 'f' then
        value = {t}
      elseif t == 'string' then
        value = {t, redis.call('GET', key)}
      elseif t == 'list' then
        value = redis.call('LRANGE', key, 0, -1)
        table.insert(value, 1, t)
      elseif t == 'zset' then
        -- member, score, ...: scores as the server prints them, which parse back exactly.
        value = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
        table.insert(value, 1, t)
      else
        value = {t}
      end
    end
  end
  out[#out + 1] = meta
  out[#out + 1] = value
end
return out
