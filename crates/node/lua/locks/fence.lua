#!lua
local v = redis.call('GET', KEYS[1])
local prefix = ARGV[1] .. '|'
if not v or string.sub(v, 1, #prefix) ~= prefix then return 0 end
local cur = tonumber(redis.call('GET', KEYS[2]) or '0')
if tonumber(ARGV[2]) > cur then redis.call('SET', KEYS[2], ARGV[2]) end
redis.call('SET', KEYS[1], prefix .. ARGV[3] .. '|' .. ARGV[2], 'KEEPTTL')
return 1
