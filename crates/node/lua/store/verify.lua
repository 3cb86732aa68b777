-- Per key (KEYS: the value key, then its metadata hash), whether the value is the one its
-- metadata records, on this node alone: nothing crosses the wire but the key names.
-- Returns {code, stored metadata or false} per key. Codes: 0 intact (or neither value nor
-- metadata), 1 content changed (or a value written over a tombstone), 2 deleted, 3 expiry
-- changed, 4 type changed, 5 a value without metadata.
--
-- A string, the common case, costs three calls: the entry, PEXPIRETIME (which answers -2 for a
-- missing key, so it says whether the key exists too) and GET; other types take content_of.
local out = {}
for i = 1, #KEYS, 2 do
  local key = KEYS[i]
  local meta = redis.call('HGET', KEYS[i + 1], key)
  local at = redis.call('PEXPIRETIME', key)
  local exists = at ~= -2
  local code = 0
  if not meta then
    if exists then code = 5 end
  else
    local kind, exp, want = entry_kind(meta), entry_expiry(meta), entry_content(meta)
    local live = exp == 0 or exp > clock()
    if not exists then
      if live and kind ~= 't' and want ~= '-' then code = 2 end
    elseif kind == 't' or want == '-' then
      code = 1
    elseif not live then
      -- Still here after the expiry its metadata records: its TTL was changed.
      code = 3
    else
      local same_type, same_content
      local value = string.sub(want, 1, 1) == 's' and redis.pcall('GET', key)
      if type(value) == 'string' then
        -- Compared as numbers: no formatting of the checksum.
        same_type, same_content = true, h48(value) == entry_checksum(meta)
      else
        -- Not a string where one is expected (GET answered WRONGTYPE), or not expected.
        local got = content_of(key, string.sub(want, 1, 1))
        same_type = string.sub(got, 1, 1) == string.sub(want, 1, 1)
        same_content = got == want
      end
      if not same_type then
        code = 4
      elseif not same_content then
        code = 1
      else
        if at < 0 then at = 0 end
        if at ~= exp then code = 3 end
      end
    end
  end
  out[#out + 1] = code
  out[#out + 1] = meta or false
end
return out
