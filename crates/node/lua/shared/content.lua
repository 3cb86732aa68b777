
-- content_of(key): the type letter and 48-bit checksum of the value stored under `key`, or '-'
-- when there is none; the same function as quorumd-core's `content` module (see there).
-- Sums are reduced modulo 2^48 at every step, so they stay exact in a double.
local CM = 281474976710656
local function h48(s)
  return tonumber(string.sub(redis.sha1hex(s), 1, 12), 16)
end
local type_codes = {string = 's', hash = 'h', list = 'l', set = 'e', zset = 'z', stream = 'x'}
local function content_of(key)
  local t = redis.call('TYPE', key)['ok']
  if t == 'none' then return '-' end
  local sum = 0
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
    for _, entry in ipairs(redis.call('XRANGE', key, '-', '+')) do
      local parts = {#entry[1], ':', entry[1]}
      for _, fv in ipairs(entry[2]) do
        parts[#parts + 1] = #fv .. ':' .. fv
      end
      sum = (sum + h48(table.concat(parts))) % CM
    end
  else
    sum = h48(redis.call('DUMP', key))
  end
  return (type_codes[t] or 'o') .. string.format('%.0f', sum)
end
