-- content_of(key, stream_code): the type letter and 48-bit checksum of the value stored under
-- `key`, or '-' when there is none; the same function as quorumd-core's `content` module (see
-- there). A stream is checksummed by the function of `stream_code`: 'x' its entries only (the
-- function entries written before 'y' record), anything else 'y' (entries, metadata, groups).
-- Sums are reduced modulo 2^48 at every step, so they stay exact in a double.
local CM = 281474976710656
local function h48(s)
  return tonumber(string.sub(redis.sha1hex(s), 1, 12), 16)
end
local type_codes = {string = 's', hash = 'h', list = 'l', set = 'e', zset = 'z'}
local function flat_map(reply)
  local m = {}
  for i = 1, #reply, 2 do m[reply[i]] = reply[i + 1] end
  return m
end
local function prefixed(s)
  return #s .. ':' .. s
end
local function entries_sum(entries)
  local sum = 0
  for _, entry in ipairs(entries) do
    local parts = {#entry[1], ':', entry[1]}
    for _, fv in ipairs(entry[2]) do
      parts[#parts + 1] = #fv .. ':' .. fv
    end
    sum = (sum + h48(table.concat(parts))) % CM
  end
  return sum
end
-- The 'y' function: what two nodes holding the same stream agree on, nothing a node changes by
-- itself or derives (length, lag, PEL counts, idle times, the radix tree's layout). Integers
-- come from Redis as doubles and are printed with %.0f, as the core prints them.
local function stream_sum(key)
  local at = flat_map(redis.call('XINFO', 'STREAM', key))
  local sum = h48('stream:' .. at['last-generated-id'] .. ' ' ..
    string.format('%.0f', at['entries-added']) .. ' ' .. at['max-deleted-entry-id'])
  if at['groups'] == 0 then
    return (sum + entries_sum(redis.call('XRANGE', key, '-', '+'))) % CM
  end
  -- FULL with COUNT 0 lists every entry and every group whole; only streams with groups pay.
  local full = flat_map(redis.call('XINFO', 'STREAM', key, 'FULL', 'COUNT', 0))
  sum = (sum + entries_sum(full['entries'])) % CM
  for _, group in ipairs(full['groups']) do
    local g = flat_map(group)
    local name = prefixed(g['name'])
    local read = g['entries-read'] and string.format('%.0f', g['entries-read']) or '-'
    sum = (sum + h48('group:' .. name .. g['last-delivered-id'] .. ' ' .. read)) % CM
    for _, p in ipairs(g['pending']) do
      sum = (sum + h48('pending:' .. name .. p[1] .. ' ' .. prefixed(p[2]) ..
        string.format('%.0f', p[3]) .. ' ' .. string.format('%.0f', p[4]))) % CM
    end
    for _, consumer in ipairs(g['consumers']) do
      local c = flat_map(consumer)
      sum = (sum + h48('consumer:' .. name .. prefixed(c['name']) ..
        string.format('%.0f', c['seen-time']))) % CM
    end
  end
  return sum
end
local function content_of(key, stream_code)
  local t = redis.call('TYPE', key)['ok']
  if t == 'none' then return '-' end
  local sum = 0
  local code = type_codes[t] or 'o'
  if t == 'string' then
    sum = h48(redis.call('GET', key))
  elseif t == 'hash' then
    local kv = redis.call('HGETALL', key)
    for i = 1, #kv, 2 do sum = (sum + h48(#kv[i] .. ':' .. kv[i] .. kv[i + 1])) % CM end
  elseif t == 'set' then
    for _, m in ipairs(redis.call('SMEMBERS', key)) do sum = (sum + h48(m)) % CM end
  elseif t == 'zset' then
    local ms = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
    -- The score reprinted as redis-server 7.0 prints it: 7.2 replies with the shortest form,
    -- and the checksum must not depend on the server's version.
    for i = 1, #ms, 2 do
      local score = string.format('%.17g', tonumber(ms[i + 1]))
      sum = (sum + h48(#ms[i] .. ':' .. ms[i] .. score)) % CM
    end
  elseif t == 'list' then
    for i, e in ipairs(redis.call('LRANGE', key, 0, -1)) do
      sum = (sum + h48((i - 1) .. ':' .. e)) % CM
    end
  elseif t == 'stream' then
    if stream_code == 'x' then
      code, sum = 'x', entries_sum(redis.call('XRANGE', key, '-', '+'))
    else
      code, sum = 'y', stream_sum(key)
    end
  else
    sum = h48(redis.call('DUMP', key))
  end
  return code .. string.format('%.0f', sum)
end
