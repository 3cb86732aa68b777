#!lua
-- KEYS: hint sets, one per node that missed the write. ARGV[1]: the key; ARGV[2]: the most keys
-- a hint set may hold. Adds the key to each set that has room (or already holds it). Returns,
-- per set, 1 if it holds the key afterwards and 0 if it was full.
local cap = tonumber(ARGV[2])
local out = {}
for i = 1, #KEYS do
  if redis.call('SISMEMBER', KEYS[i], ARGV[1]) == 1 then
    out[i] = 1
  elseif redis.call('SCARD', KEYS[i]) < cap then
    redis.call('SADD', KEYS[i], ARGV[1])
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
