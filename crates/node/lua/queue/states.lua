#!lua flags=no-writes
local out = {}
for i = 1, #ARGV do
  local id = ARGV[i]
  out[#out + 1] = redis.call('HGET', KEYS[1], id) or ''
  out[#out + 1] = string.format('%d', redis.call('HSTRLEN', KEYS[2], id))
  out[#out + 1] = redis.call('ZSCORE', KEYS[3], id) or ''
end
return out
