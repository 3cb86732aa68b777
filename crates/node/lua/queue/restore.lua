local mark, window = tonumber(ARGV[1]), tonumber(ARGV[2])
-- Past the window the log may have forgotten a purge made after the mark: write nothing.
if clock() - mark >= window then return {-1} end
local items = {}
for i = 3, #ARGV, 4 do
  local rec = parse(ARGV[i + 1])
  if not rec then return redis.error_reply('malformed queue record') end
  items[#items + 1] = {ARGV[i], rec, ARGV[i + 2], tonumber(ARGV[i + 3])}
end
local out = {}
for _, it in ipairs(items) do
  if redis.call('ZSCORE', KEYS[5], it[1]) then
    out[#out + 1] = 2
  else
    local _, changed = merge_item(it[1], it[2], it[3], it[4])
    out[#out + 1] = changed and 1 or 0
  end
end
return out
