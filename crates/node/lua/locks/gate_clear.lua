#!lua
-- KEYS: the node's lock gates. ARGV: ms. Removes each gate whose loss began at least that
-- long ago by this server's clock (a fence catch-up that started after the loss's lock delay
-- covers it); a gate of a later loss stays. Returns how many went.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = 0
for i = 1, #KEYS do
  local gate = redis.call('GET', KEYS[i])
  local lost_at = gate and tonumber(string.match(gate, '^(%d+)|'))
  if lost_at and lost_at <= now - tonumber(ARGV[1]) then
    redis.call('DEL', KEYS[i])
    n = n + 1
  end
end
return n
