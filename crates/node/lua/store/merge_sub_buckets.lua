-- Merges buckets' metadata from S sub-bucket hashes (ARGV[2]) into fewer, S' (ARGV[1], a power
-- of two below S), in place. A key's sub-bucket under S' is its sub-bucket under S mod S'
-- (both are the low bits of the same hash: see quorumd_core::layout), so hash i moves into
-- hash i mod S'. KEYS, per bucket: its sub-digest hash, then its S metadata hashes in
-- sub-bucket order. The S' sub-digests are summed again from their entries and the others
-- dropped; a bucket digest, the sum of every entry, does not change. Running it again moves
-- nothing. Returns the entries moved.
local target, from = tonumber(ARGV[1]), tonumber(ARGV[2])
local moved = 0
for first = 1, #KEYS, from + 1 do
  local skey = KEYS[first]
  local function meta(sub) return KEYS[first + 1 + sub] end
  for i = target, from - 1 do
    local kv = redis.call('HGETALL', meta(i))
    -- In pieces: Lua's unpack is bounded by the C stack (about 8,000 values).
    for j = 1, #kv, 1000 do
      redis.call('HSET', meta(i % target), unpack(kv, j, math.min(j + 999, #kv)))
    end
    moved = moved + #kv / 2
    redis.call('DEL', meta(i))
    redis.call('HDEL', skey, tostring(i))
  end
  for sub = 0, target - 1 do
    local kv = redis.call('HGETALL', meta(sub))
    local sum = 0
    for j = 2, #kv, 2 do
      sum = (sum + entry_hash(kv[j])) % M
    end
    if sum == 0 then
      redis.call('HDEL', skey, tostring(sub))
    else
      redis.call('HSET', skey, tostring(sub), string.format('%d', sum))
    end
  end
end
return moved
