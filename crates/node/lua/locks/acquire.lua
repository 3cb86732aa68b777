#!lua
local counter = redis.call('GET', KEYS[2]) or '0'
if redis.call('EXISTS', KEYS[1]) == 1 then return {0, counter} end
if tonumber(ARGV[4]) <= tonumber(counter) then return {2, counter} end
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. ARGV[3] .. '|' .. ARGV[4], 'PX', ARGV[2])
redis.call('SET', KEYS[2], ARGV[4])
return {1, ARGV[4]}
