-- Withdraws a read-modify-write's promise that no write will follow (the command changed
-- nothing, or gave up), so that other writers need not wait for it to expire. Only the
-- writer's own: another's promise may have replaced it.
-- KEYS: the value key and its metadata hash. ARGV: the ballot.
local pkey = promise_key(KEYS[2], KEYS[1])
if redis.call('GET', pkey) == ARGV[1] then
  redis.call('DEL', pkey)
end
return 1
