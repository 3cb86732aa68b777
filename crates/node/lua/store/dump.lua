#!lua flags=no-writes
local out = {}
for i = 1, #KEYS, 2 do
  out[#out + 1] = redis.call('HGET', KEYS[i + 1], KEYS[i])
  out[#out + 1] = redis.call('DUMP', KEYS[i])
end
return out
