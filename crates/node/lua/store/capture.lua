-- Per key (KEYS: the value key, then its metadata hash): what adopting the value as it stands
-- on this node needs, read atomically. Returns {metadata or false, DUMP or false, content,
-- absolute expiry in ms (0 = none)} per key. ARGV[1]: the letter of the stream checksum the
-- content is given in (see content.lua).
local out = {}
for i = 1, #KEYS, 2 do
  local key = KEYS[i]
  local at = redis.call('PEXPIRETIME', key)
  if at < 0 then at = 0 end
  out[#out + 1] = redis.call('HGET', KEYS[i + 1], key)
  out[#out + 1] = redis.call('DUMP', key)
  out[#out + 1] = content_of(key, ARGV[1])
  out[#out + 1] = at
end
return out
