#!lua
local v = redis.call('GET', KEYS[1])
local prefix = ARGV[1] .. '|'
if v and string.sub(v, 1, #prefix) == prefix then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
