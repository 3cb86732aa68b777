-- Converts the text metadata entries of formats 1 (`version|kind|expiry|hash`) and 2
-- (`version|kind|expiry|content|hash`) in KEYS (metadata hashes) to the binary format 3 in
-- place; format 1 gains the content of the value the node holds now. The entry hash is kept:
-- it is defined over the text fields, so every digest stays valid. Entries already binary
-- (at most 39 bytes; text ones are at least 41) are left alone. ARGV[1]: the letter of the
-- stream checksum (see content.lua). Returns the entries converted.
local converted = 0
for _, mkey in ipairs(KEYS) do
  local kv = redis.call('HGETALL', mkey)
  for i = 1, #kv, 2 do
    local key, meta = kv[i], kv[i + 1]
    if #meta >= 41 and string.byte(meta, 35) == 124 then
      local hex, kind, expiry, content, hash = string.match(meta, '^(%x+)|(%a)|(%d+)|([^|]*)|(%d+)$')
      if not hex then
        hex, kind, expiry, hash = string.match(meta, '^(%x+)|(%a)|(%d+)|(%d+)$')
        content = '-'
        if hex and kind ~= 't' then content = content_of(key, ARGV[1]) end
      end
      if hex and #hex == 34 then
        local version = struct.pack('>I6I3I4I4', tonumber(string.sub(hex, 1, 12), 16),
          tonumber(string.sub(hex, 13, 18), 16), tonumber(string.sub(hex, 19, 26), 16),
          tonumber(string.sub(hex, 27, 34), 16))
        redis.call('HSET', mkey, key, entry_pack(version, kind, tonumber(hash), content,
          tonumber(expiry)))
        converted = converted + 1
      end
    end
  end
end
return converted
