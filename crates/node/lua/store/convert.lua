-- Converts metadata entries of format 1 (`version|kind|expiry|hash`) to format 2 in place by
-- inserting the content of the value the node holds now (KEYS: metadata hashes). The entry
-- hash does not cover the content, so digests stay valid. ARGV[1]: the letter of the stream
-- checksum (see content.lua). Returns the entries converted.
local converted = 0
for _, mkey in ipairs(KEYS) do
  local kv = redis.call('HGETALL', mkey)
  for i = 1, #kv, 2 do
    local key, meta = kv[i], kv[i + 1]
    local head, hash = string.match(meta, '^([^|]*|[^|]*|[^|]*)|(%d+)$')
    if head then
      local content = '-'
      if string.sub(head, 36, 36) ~= 't' then content = content_of(key, ARGV[1]) end
      redis.call('HSET', mkey, key, head .. '|' .. content .. '|' .. hash)
      converted = converted + 1
    end
  end
end
return converted
