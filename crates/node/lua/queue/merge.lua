#!lua
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
local id = ARGV[1]
local out = parse(ARGV[2])
if not out then return redis.error_reply('malformed queue record') end
local cur_raw = redis.call('HGET', KEYS[1], id)
local cur = cur_raw and parse(cur_raw)
if cur then
  local d = math.max(out.d, cur.d)
  if less(out, cur) then out = cur end
  out = {s = out.s, f = out.f, st = out.st, d = d, nb = out.nb, p = out.p}
end
local enc = out.s .. '|' .. string.format('%.0f', out.f) .. '|' .. out.st .. '|' ..
  string.format('%.0f', out.d) .. '|' .. out.nb .. '|' .. out.p
redis.call('HSET', KEYS[1], id, enc)
local now, ttl = tonumber(ARGV[4]), tonumber(ARGV[5])
if out.s == 'a' then
  redis.call('ZREM', KEYS[3], id)
  redis.call('HDEL', KEYS[2], id)
  redis.call('ZADD', KEYS[4], 'NX', now, id)
  redis.call('PEXPIRE', KEYS[5], ttl)
else
  if out.s == 'x' then
    redis.call('ZREM', KEYS[3], id)
  else
    redis.call('ZADD', KEYS[3], -tonumber(out.p), id)
  end
  if ARGV[3] ~= '' and redis.call('HEXISTS', KEYS[2], id) == 0 then
    redis.call('HSET', KEYS[2], id, ARGV[3])
  end
end
local old = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now - ttl, 'LIMIT', 0, 16)
for _, o in ipairs(old) do
  local r = redis.call('HGET', KEYS[1], o)
  if r and string.sub(r, 1, 1) == 'a' then redis.call('HDEL', KEYS[1], o) end
  redis.call('ZREM', KEYS[4], o)
end
return enc
