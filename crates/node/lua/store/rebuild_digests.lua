
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
-- if it did.
local function fix(hash, field, sum)
  if reduced(redis.call('HGET', hash, field) or '0') == sum then return false end
  redis.call('HSET', hash, field, string.format('%d', sum))
  return true
end
for i = 2, #ARGV do
  local bucket = ARGV[i]
  local k = 1 + (i - 2) * (S + 2)
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
  drifted = fix(dkey, bucket, total) or drifted
  if drifted then fixed[#fixed + 1] = bucket end
end
return fixed
