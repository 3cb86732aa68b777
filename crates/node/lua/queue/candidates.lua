#!lua flags=no-writes
local out = {}
local now, want, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local start = 0
while #out < 2 * want and start < limit do
  local ids = redis.call('ZRANGE', KEYS[2], start, start + 63, 'WITHSCORES')
  if #ids == 0 then break end
  for i = 1, #ids, 2 do
    local r = redis.call('HGET', KEYS[1], ids[i])
    if r then
      local s, nb = string.match(r, '^(%a)|%d+|%x*|%d+|(%d+)|')
      if (s == 'r' or s == 'l') and tonumber(nb) <= now then
        out[#out + 1] = ids[i]
        out[#out + 1] = ids[i + 1]
        if #out >= 2 * want then break end
      end
    end
  end
  start = start + 64
end
return out
