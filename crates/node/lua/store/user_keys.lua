#!lua flags=no-writes
-- KEYS[1..ARGV[1]]: quorumd's keys counted when they exist (the digest hashes, the sentinel,
-- its records, the layout marker, the probe key); the rest: every bucket's sub-digest hash,
-- whose non-zero fields each stand for one metadata hash.
local singles = tonumber(ARGV[1])
local n = redis.call('DBSIZE')
for i = 1, singles do
  n = n - redis.call('EXISTS', KEYS[i])
end
for i = singles + 1, #KEYS do
  local subs = redis.call('HVALS', KEYS[i])
  if #subs > 0 then n = n - 1 end
  for _, d in ipairs(subs) do
    if d ~= '0' then n = n - 1 end
  end
end
if n < 0 then n = 0 end
return n
