-- Per key (KEYS: the value key, its metadata hash, its state hash), whether a CRDT key's state
-- is the one its entry hash sums (the state hash changed outside quorumd), on this node alone.
-- Returns per key 1 changed, else 0 (intact, or not a CRDT key here).
local CM = 281474976710656
local crdt_kinds = {C = true, S = true, M = true}
local out = {}
for i = 1, #KEYS, 3 do
  local key, mkey, skey = KEYS[i], KEYS[i + 1], KEYS[i + 2]
  local meta = redis.call('HGET', mkey, key)
  local code = 0
  if meta and crdt_kinds[string.sub(meta, 36, 36)] then
    -- The entry hash as merge.lua keeps it: one hash for the kind, one per field.
    local kp = #key .. ':' .. key
    local function fh(f, v)
      return tonumber(string.sub(redis.sha1hex(kp .. #f .. ':' .. f .. v), 1, 12), 16)
    end
    local hash = fh('', string.sub(meta, 36, 36))
    local st = redis.call('HGETALL', skey)
    for j = 1, #st, 2 do hash = (hash + fh(st[j], st[j + 1])) % CM end
    if hash ~= tonumber(string.match(meta, '|(%d+)$')) then code = 1 end
  end
  out[#out + 1] = code
end
return out
