
-- A CRDT key's entry hash: one 48-bit hash of its kind, plus one per state field, modulo 2^48.
-- `kp` is the key prefixed with its length (`crdt_key_part`): lengths make each hashed string
-- unambiguous, and the key is in it so that two keys with equal states do not cancel out in
-- the bucket digest. merge.lua keeps the hash by these terms; verify_state.lua sums them again.
local function crdt_key_part(key)
  return #key .. ':' .. key
end
local function crdt_field_hash(kp, f, v)
  return tonumber(string.sub(redis.sha1hex(kp .. #f .. ':' .. f .. v), 1, 12), 16)
end
local function crdt_state_hash(kp, kind, skey)
  local sum = crdt_field_hash(kp, '', kind)
  local st = redis.call('HGETALL', skey)
  for i = 1, #st, 2 do
    sum = (sum + crdt_field_hash(kp, st[i], st[i + 1])) % 281474976710656
  end
  return sum
end
