-- The scrub's check of whole metadata hashes (KEYS): every entry's value against the entry, as
-- VERIFY checks one key (`verify_entry`), on this node alone; only the hashes' names cross the
-- wire, and only what is not intact comes back. The user keys are not declared: under the
-- `slot` placement they share the hashes' slot, and the `xxh3` placement serves standalone
-- servers only. Returns {key, code, entry} for each entry that is not intact, then the number
-- of entries checked.
--
-- The values are read by one MGET per KEYS_PER_MGET entries instead of one GET each: a
-- `redis.call` costs about as much as the GET it runs. The bound keeps the values of big keys
-- from all being held at once.
local KEYS_PER_MGET = 16
local out = {}
local checked = 0
for _, mkey in ipairs(KEYS) do
  local kv = redis.call('HGETALL', mkey)
  for first = 1, #kv, 2 * KEYS_PER_MGET do
    local last = math.min(#kv, first + 2 * KEYS_PER_MGET - 1)
    local keys = {}
    for i = first, last, 2 do
      keys[#keys + 1] = kv[i]
    end
    local values = redis.call('MGET', unpack(keys))
    for i = first, last, 2 do
      local code = verify_entry(kv[i], kv[i + 1], values[(i - first) / 2 + 1])
      if code ~= 0 then
        out[#out + 1] = kv[i]
        out[#out + 1] = code
        out[#out + 1] = kv[i + 1]
      end
    end
  end
  checked = checked + #kv / 2
end
out[#out + 1] = checked
return out
