#!lua
-- KEYS: the node's lock gates (one per sentinel). ARGV: how long ago the loss began (ms, by
-- the writer's clock), what it took ('all' or slot ranges). Stores when the loss began by this
-- server's clock, so that a reader with another clock can tell its age.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lost_at = now - tonumber(ARGV[1])
for i = 1, #KEYS do
  redis.call('SET', KEYS[i], string.format('%d', lost_at) .. '|' .. ARGV[2])
end
return 1
