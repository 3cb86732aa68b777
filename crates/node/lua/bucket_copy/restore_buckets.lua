
-- Keys per MGET/MSET: unpack puts every argument on Lua's stack, which holds about 8,000.
local KEYS_PER_COMMAND = 1000
local out = {}
local mset = {}
local function flush()
  if #mset > 0 then
    redis.call('MSET', unpack(mset))
    mset = {}
  end
end
local k, a = 1, 1
while a <= OWN_ARGS do
  -- The bucket's digest field: empty when its digest key is a string (see `add_digest`).
  local field, digest = ARGV[a], ARGV[a + 1]
  -- Each bucket's keys start with its digest key.
  local dkey = KEYS[k]
  k = k + 1
  local m, s, v = tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])
  local kinds = ARGV[a + 5]
  local _, timed = string.gsub(kinds, '[SD]', '')
  a = a + 6
  -- Where each hash's fields start in ARGV, and how many there are.
  local hashes = {}
  for i = 1, m + s do
    local n = tonumber(ARGV[a])
    hashes[i] = {a + 1, n}
    a = a + 1 + 2 * n
  end
  -- One EXISTS for all of them: each redis.call costs about as much as the check itself.
  local empty = m == 0 or redis.call('EXISTS', unpack(KEYS, k, k + m - 1)) == 0
  if empty then
    -- Values first: if a command fails the script stops before any metadata names them.
    local at = a
    if v > 0 then own_begin() end
    for j = 0, v - 1 do
      local key, kind, payload = KEYS[k + m + s + j], string.byte(kinds, j + 1), ARGV[at]
      -- The expiry goes to Redis as the text it came in: a Lua number above 2^53 would be
      -- printed in exponent form, which Redis refuses as an integer.
      local expiry, expiry_text = 0, '0'
      at = at + 1
      if kind == 83 or kind == 68 then -- 'S', 'D': an expiry follows
        expiry_text = ARGV[at]
        expiry = tonumber(expiry_text)
        at = at + 1
      end
      if kind == 110 or (expiry ~= 0 and expiry <= clock()) then -- 'n'
        redis.call('DEL', key)
      elseif kind == 115 then -- 's'
        mset[#mset + 1] = key
        mset[#mset + 1] = payload
        if #mset >= 2 * KEYS_PER_COMMAND then
          flush()
        end
      elseif kind == 83 then
        redis.call('SET', key, payload, 'PXAT', expiry_text)
      else
        redis.call('RESTORE', key, expiry_text, payload, 'REPLACE', 'ABSTTL')
      end
    end
    flush()
    for i = 1, m + s do
      local key, from, n = KEYS[k + i - 1], hashes[i][1], hashes[i][2]
      -- The metadata hashes were found absent above; only a state key may hold anything.
      if i > m then
        redis.call('DEL', key)
      end
      for c = 0, n - 1, KEYS_PER_COMMAND do
        local last = from + 2 * math.min(c + KEYS_PER_COMMAND, n) - 1
        redis.call('HSET', key, unpack(ARGV, from + 2 * c, last))
      end
    end
    if field == '' then
      redis.call('SET', dkey, digest)
    else
      redis.call('HSET', dkey, field, digest)
    end
  end
  out[#out + 1] = empty and 1 or 0
  k, a = k + m + s + v, a + v + timed
end
return out
