#!lua
local ok = redis.call('SET', KEYS[1], ARGV[1] .. '|' .. ARGV[3] .. '|', 'NX', 'PX', ARGV[2])
local fence = redis.call('GET', KEYS[2]) or '0'
if ok then return {1, fence} end
return {0, fence}
