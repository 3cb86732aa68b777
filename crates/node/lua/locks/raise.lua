#!lua
local n = 0
for i = 1, #KEYS do
  local cur = tonumber(redis.call('GET', KEYS[i]) or '0')
  if tonumber(ARGV[i]) > cur then redis.call('SET', KEYS[i], ARGV[i]) n = n + 1 end
end
return n
