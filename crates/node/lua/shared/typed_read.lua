-- The typed read of one key (lists, sorted sets, and any key a typed command meets): its
-- metadata (or false) and false when there is no value, else {type} or, when `full`,
-- {'string', value} / {'list', element, ...} / {'zset', member, score, ...} /
-- {'hash', field, value, ...} / {'set', member, ...} /
-- {'stream', last-generated-id, max-deleted-entry-id, entries-added, groups..., id, n, field,
-- value, ...} (the consumer groups as described below, then per entry its ID, its field
-- count n, and its n fields with their values). TYPE comes first,
-- so a key of another type answers with its name and the caller replies WRONGTYPE.
local crdt_kinds = {C = true, S = true, M = true}
local function typed_read(key, mkey, full)
  local meta = redis.call('HGET', mkey, key)
  -- A CRDT key's value is the CRDT store's to read; its metadata says enough.
  if meta and crdt_kinds[entry_kind(meta)] then return meta, false end
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
    value = {t, at['last-generated-id'], at['max-deleted-entry-id'], string.format('%.0f', at['entries-added'])}
    local entries, groups = nil, {}
    if at['groups'] > 0 then
      -- The groups with their PELs and consumers: FULL with COUNT 0 lists them all (and the
      -- entries, so XRANGE is not needed). Only streams with groups pay for it.
      local full = redis.call('XINFO', 'STREAM', key, 'FULL', 'COUNT', 0)
      local f = {}
      for i = 1, #full, 2 do f[full[i]] = full[i + 1] end
      entries, groups = f['entries'], f['groups']
    else
      entries = redis.call('XRANGE', key, '-', '+')
    end
    -- Per group: name, last-delivered-id, entries-read ('' when unknown), the PEL's size and
    -- per pending entry its ID, consumer, delivery time and count, then the consumer count
    -- and per consumer its name and seen time. Times are integers below 2^53: exact here.
    value[#value + 1] = tostring(#groups)
    for _, group in ipairs(groups) do
      local g = {}
      for i = 1, #group, 2 do g[group[i]] = group[i + 1] end
      value[#value + 1] = g['name']
      value[#value + 1] = g['last-delivered-id']
      value[#value + 1] = g['entries-read'] and string.format('%.0f', g['entries-read']) or ''
      value[#value + 1] = tostring(#g['pending'])
      for _, p in ipairs(g['pending']) do
        value[#value + 1] = p[1]
        value[#value + 1] = p[2]
        value[#value + 1] = string.format('%.0f', p[3])
        value[#value + 1] = string.format('%.0f', p[4])
      end
      value[#value + 1] = tostring(#g['consumers'])
      for _, consumer in ipairs(g['consumers']) do
        local c = {}
        for i = 1, #consumer, 2 do c[consumer[i]] = consumer[i + 1] end
        value[#value + 1] = c['name']
        value[#value + 1] = string.format('%.0f', c['seen-time'])
      end
    end
    for _, entry in ipairs(entries) do
      value[#value + 1] = entry[1]
      value[#value + 1] = tostring(#entry[2] / 2)
      for _, fv in ipairs(entry[2]) do value[#value + 1] = fv end
    end
  else
    value = {t}
  end
  return meta, value
end
