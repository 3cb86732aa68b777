-- Per key (KEYS: the value key, then its metadata hash), whether the value is the one its
-- metadata records, on this node alone (`verify_entry`): nothing crosses the wire but the key
-- names. Returns {code, stored metadata or false} per key.
local out = {}
for i = 1, #KEYS, 2 do
  local key = KEYS[i]
  local meta = redis.call('HGET', KEYS[i + 1], key)
  out[#out + 1] = verify_entry(key, meta)
  out[#out + 1] = meta or false
end
return out
