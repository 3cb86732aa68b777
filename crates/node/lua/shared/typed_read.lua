-- The typed read of one key (lists, sorted sets, and any key a typed command meets): its
-- metadata (or false) and false when there is no value, else {type} or, when `full`,
-- {'string', value} / {'list', element, ...} / {'zset', member, score, ...} /
-- {'hash', field, value, ...} / {'set', member, ...} /
-- {'stream', last-generated-id, max-deleted-entry-id, entries-added, id, n, field, value, ...}
-- (n the entry's field count, then its n fields with their values). TYPE comes first,
-- so a key of another type answers with its name and the caller replies WRONGTYPE.
local crdt_kinds = {C = true, S = true, M = true}
local function typed_read(key, mkey, full)
  local meta = redis.call('HGET', mkey, key)
  -- A CRDT key's value is the CRDT store's to read; its metadata says enough.
  if meta and crdt_kinds[string.sub(meta, 36, 36)] then return meta, false end
  local t = redis.call('TYPE', key)['ok']
  if t == 'none' then return meta, false end
  if not full then return meta, {t} end
  local value
  if t == 'string' then
    value = {t, redis.call('GET', key)}
  elseif t == 'list' then
    value = redis.call('LRANGE', key, 0, -1)
    table.insert(value, 1, t)
  elseif t == 'zset' then
    -- member, score, ...: scores as the server prints them, which parse back exactly.
    value = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
    table.insert(value, 1, t)
  elseif t == 'hash' then
    -- field, value, ... in the node's order.
    value = redis.call('HGETALL', key)
    table.insert(value, 1, t)
  elseif t == 'set' then
    value = redis.call('SMEMBERS', key)
    table.insert(value, 1, t)
  elseif t == 'stream' then
    -- The fields a stream keeps beside its entries: XINFO STREAM's reply, a flat map.
    local info = redis.call('XINFO', 'STREAM', key)
    local at = {}
    for i = 1, #info, 2 do at[info[i]] = info[i + 1] end
    value = {t, at['last-generated-id'], at['max-deleted-entry-id'], tostring(at['entries-added'])}
    for _, entry in ipairs(redis.call('XRANGE', key, '-', '+')) do
      value[#value + 1] = entry[1]
      value[#value + 1] = tostring(#entry[2] / 2)
      for _, fv in ipairs(entry[2]) do value[#value + 1] = fv end
    end
  else
    value = {t}
  end
  return meta, value
end
