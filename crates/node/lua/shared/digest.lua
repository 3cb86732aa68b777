
local M = 281474976710656
local function add_digest(hash, field, delta)
  local d = tonumber(redis.call('HGET', hash, field) or '0')
  redis.call('HSET', hash, field, string.format('%.0f', (d + delta) % M))
end
