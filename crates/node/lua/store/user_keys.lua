#!lua flags=no-writes
local n = redis.call('DBSIZE') - redis.call('EXISTS', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5])
for i = 6, #KEYS do
  local subs = redis.call('HVALS', KEYS[i])
  if #subs > 0 then n = n - 1 end
  for _, d in ipairs(subs) do
    if d ~= '0' then n = n - 1 end
  end
end
if n < 0 then n = 0 end
return n
