-- Turns bucket digests of the slot placement stored the old way, a hash `{prefix}d{<tag>}`
-- with the slot's one field, into the string of that name holding the same value (KEYS: the
-- digest keys). The stored int64 is kept as it is: readers reduce it mod 2^48 either way, and
-- INCRBY grows the string as HINCRBY grew the field. Keys already strings, or absent, are left
-- alone, so running it again converts nothing. Returns the keys converted.
local converted = 0
for _, dkey in ipairs(KEYS) do
  if redis.call('TYPE', dkey).ok == 'hash' then
    local fields = redis.call('HGETALL', dkey)
    if #fields ~= 2 then
      return redis.error_reply('ERR ' .. dkey .. ' holds ' .. (#fields / 2) ..
        ' digest fields, one expected')
    end
    redis.call('DEL', dkey)
    redis.call('SET', dkey, fields[2])
    converted = converted + 1
  end
end
return converted
