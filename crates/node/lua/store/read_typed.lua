-- The typed read of a batch of keys (`typed_read`). KEYS: per key the value key and its
-- metadata hash. ARGV: per key `f` (the whole value of a string, a list or a sorted set) or
-- `y` (its type only). Returns per key the metadata and the value `typed_read` returns. A
-- separate script from READ, whose GET stays the whole cost of the string path.
local out = {}
for i = 1, #KEYS, 2 do
  local meta, value = typed_read(KEYS[i], KEYS[i + 1], ARGV[(i + 1) / 2] == 'f')
  out[#out + 1] = meta
  out[#out + 1] = value
end
return out
