#!lua flags=no-writes
-- The entries of the metadata hashes in KEYS, leaving out the empty ones (most of them in a
-- sparse keyspace, so a scan step's reply stays small): for each non-empty hash, its position
-- in KEYS (1-based), then its HGETALL reply.
local out = {}
for i = 1, #KEYS do
  local entries = redis.call('HGETALL', KEYS[i])
  if #entries > 0 then
    out[#out + 1] = i
    out[#out + 1] = entries
  end
end
return out
