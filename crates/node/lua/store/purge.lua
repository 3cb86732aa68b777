
local removed = 0
for i = 0, #KEYS / 4 - 1 do
  local key, mkey, dkey, skey = KEYS[1 + 4 * i], KEYS[2 + 4 * i], KEYS[3 + 4 * i], KEYS[4 + 4 * i]
  local bucket, sub, expected = ARGV[1 + 3 * i], ARGV[2 + 3 * i], ARGV[3 + 3 * i]
  if redis.call('HGET', mkey, key) == expected then
    redis.call('HDEL', mkey, key)
    if entry_kind(expected) == 'v' then
      own_begin()
      redis.call('DEL', key)
    end
    local hash = entry_hash(expected)
    add_digest(dkey, bucket, -hash)
    add_digest(skey, sub, -hash)
    removed = removed + 1
  end
end
return removed
