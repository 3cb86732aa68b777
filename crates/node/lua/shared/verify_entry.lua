-- verify_entry(key, meta): whether the value under `key` on this node is the one its metadata
-- entry `meta` (false when there is none) records. Codes: 0 intact (or neither value nor
-- metadata), 1 content changed (or a value written over a tombstone), 2 deleted, 3 expiry
-- changed, 4 type changed, 5 a value without metadata.
--
-- A string, the common case, costs two calls: PEXPIRETIME (which answers -2 for a missing key,
-- so it says whether the key exists too) and GET, and its checksum is compared as a number;
-- other types take content_of, compared as text. `fetched`, when given, is the key's reply to
-- an MGET the caller made for many keys at once (a string, or false for a missing key or one
-- of another type), and takes the place of the GET.
local function verify_entry(key, meta, fetched)
  local at = redis.call('PEXPIRETIME', key)
  local exists = at ~= -2
  if not meta then
    if exists then return 5 end
    return 0
  end
  local kind, exp, letter = entry_kind(meta), entry_expiry(meta), entry_letter(meta)
  local live = exp == 0 or exp > clock()
  if not exists then
    if live and kind ~= 't' and letter ~= '-' then return 2 end
    return 0
  end
  if kind == 't' or letter == '-' then return 1 end
  -- Still here after the expiry its metadata records: its TTL was changed.
  if not live then return 3 end
  local same_type, same_content
  local value = letter == 's' and (fetched == nil and redis.pcall('GET', key) or fetched)
  if type(value) == 'string' then
    same_type, same_content = true, h48(value) == entry_checksum(meta)
  else
    -- Not a string where one is expected (GET answered WRONGTYPE), or not expected.
    local got = content_of(key, letter)
    same_type = string.sub(got, 1, 1) == letter
    same_content = got == entry_content(meta)
  end
  if not same_type then return 4 end
  if not same_content then return 1 end
  if at < 0 then at = 0 end
  if at ~= exp then return 3 end
  return 0
end
