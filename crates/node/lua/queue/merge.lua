local inc = parse(ARGV[2])
if not inc then return redis.error_reply('malformed queue record') end
local now_ms, ttl = tonumber(ARGV[4]), tonumber(ARGV[5])
local enc = merge_item(ARGV[1], inc, ARGV[3], now_ms)
if string.sub(enc, 1, 1) == 'a' then
  redis.call('PEXPIRE', KEYS[6], ttl)
end
drop_old_tombstones(now_ms, ttl, tonumber(ARGV[6]))
return enc
