#!lua flags=no-writes
-- KEYS: one lock gate. Returns {the gate or false, this server's clock in ms}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return {redis.call('GET', KEYS[1]), now}
