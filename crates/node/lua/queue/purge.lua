local r = redis.call('HGET', KEYS[1], ARGV[1])
if not r or string.sub(r, 1, 1) ~= 'a' then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('DEL', KEYS[6])
log_purge(ARGV[1], tonumber(ARGV[2]))
return 1
