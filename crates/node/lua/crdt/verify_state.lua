-- Per key (KEYS: the value key, its metadata hash, its state hash), whether a CRDT key's state
-- is the one its entry hash sums (the state hash changed outside quorumd), on this node alone.
-- Returns per key 1 changed, else 0 (intact, or not a CRDT key here).
local crdt_kinds = {C = true, S = true, M = true}
local out = {}
for i = 1, #KEYS, 3 do
  local key, mkey, skey = KEYS[i], KEYS[i + 1], KEYS[i + 2]
  local meta = redis.call('HGET', mkey, key)
  local code = 0
  local kind = meta and entry_kind(meta)
  if kind and crdt_kinds[kind] then
    local hash = crdt_state_hash(crdt_key_part(key), kind, skey)
    if hash ~= entry_hash(meta) then code = 1 end
  end
  out[#out + 1] = code
end
return out
