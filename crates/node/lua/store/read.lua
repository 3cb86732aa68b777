local out = {}
local crdt_kinds = {C = true, S = true, M = true}
for i = 1, #KEYS, 2 do
  local key = KEYS[i]
  local meta = redis.call('HGET', KEYS[i + 1], key)
  local value = false
  if ARGV[(i + 1) / 2] == 'v' and not (meta and crdt_kinds[entry_kind(meta)]) then
    value = redis.pcall('GET', key)
    if type(value) == 'table' and value.err then value = {value.err} end
  end
  out[#out + 1] = meta
  out[#out + 1] = value
end
return out
