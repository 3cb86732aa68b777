
local S = tonumber(ARGV[1])
local fixed = {}
-- A digest field's stored int64 (see `add_digest`) mod M, exactly: digit by digit, as a double
-- would round a value past 2^53.
local function reduced(stored)
  local acc = 0
  for i = 1, #stored do
    local c = string.byte(stored, i)
    if c >= 48 and c <= 57 then acc = (acc * 10 + c - 48) % M end
  end
  if string.byte(stored, 1) == 45 then acc = (M - acc) % M end
  return acc
end
-- Writes `sum` into a digest field if the field's digest differs (a missing field is 0); true
-- if it did. An empty `field`: the digest is the string `hash` (as in `add_digest`).
local function fix(hash, field, sum)
  local stored
  if field == '' then
    stored = redis.call('GET', hash)
  else
    stored = redis.call('HGET', hash, field)
  end
  if reduced(stored or '0') == sum then return false end
  if field == '' then
    redis.call('SET', hash, string.format('%d', sum))
  else
    redis.call('HSET', hash, field, string.format('%d', sum))
  end
  return true
end
for i = 0, (#ARGV - 1) / 2 - 1 do
  local bucket, field = ARGV[2 + 2 * i], ARGV[3 + 2 * i]
  local k = 1 + i * (S + 2)
  local dkey, skey = KEYS[k], KEYS[k + 1]
  local total, drifted = 0, false
  for sub = 0, S - 1 do
    local entries = redis.call('HGETALL', KEYS[k + 2 + sub])
    local sum = 0
    for j = 2, #entries, 2 do
      sum = (sum + entry_hash(entries[j])) % M
    end
    total = (total + sum) % M
    drifted = fix(skey, sub, sum) or drifted
  end
  drifted = fix(dkey, field, total) or drifted
  if drifted then fixed[#fixed + 1] = bucket end
end
return fixed
