
local S = tonumber(ARGV[1])
local fixed = {}
-- Writes `sum` into a digest field if it differs (a missing field is 0); true if it did.
local function fix(hash, field, sum)
  local new = string.format('%.0f', sum)
  if (redis.call('HGET', hash, field) or '0') == new then return false end
  redis.call('HSET', hash, field, new)
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
      sum = (sum + (tonumber(string.match(entries[j], "|(%d+)$")) or 0)) % M
    end
    total = (total + sum) % M
    drifted = fix(skey, sub, sum) or drifted
  end
  drifted = fix(dkey, bucket, total) or drifted
  if drifted then fixed[#fixed + 1] = bucket end
end
return fixed
