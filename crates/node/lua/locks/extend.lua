#!lua
local v = redis.call('GET', KEYS[1])
local prefix = ARGV[1] .. '|'
if v and string.sub(v, 1, #prefix) == prefix then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {1, v}
end
if not v and ARGV[3] ~= '' then
  redis.call('SET', KEYS[1], ARGV[3], 'NX', 'PX', ARGV[2])
  return {2, ARGV[3]}
end
return {0, ''}
