#!lua
local out = {}
for i = 1, #KEYS do
  local holder = redis.call('GET', KEYS[i])
  if ARGV[3] == 'release' then
    if holder == ARGV[1] then redis.call('DEL', KEYS[i]) out[i] = 1 else out[i] = 0 end
  elseif holder == ARGV[1] then
    redis.call('PEXPIRE', KEYS[i], ARGV[2]) out[i] = 1
  elseif ARGV[3] == 'acquire' and not holder then
    redis.call('SET', KEYS[i], ARGV[1], 'PX', ARGV[2]) out[i] = 1
  else
    out[i] = 0
  end
end
return out
