-- Metadata entries of format 3 (`quorumd_core::meta`): binary, read by position. Bytes 1-17
-- the version, 18 the kind, 19-24 the entry hash, 25 the content letter, then the checksum
-- (6 bytes, unless the letter is '-'), then the expiry (8 bytes, only when there is one).
-- All integers big-endian; `struct` reads them into exact doubles (below 2^53).
local function entry_version(e)
  return string.sub(e, 1, 17)
end
local function entry_kind(e)
  return string.sub(e, 18, 18)
end
local function entry_hash(e)
  return (struct.unpack('>I6', e, 19))
end
-- The expiry in ms, 0 for none.
local function entry_expiry(e)
  local at = string.byte(e, 25) == 45 and 26 or 32
  if #e < at + 7 then return 0 end
  return (struct.unpack('>I8', e, at))
end
-- The content's type letter ('-' for none).
local function entry_letter(e)
  return string.sub(e, 25, 25)
end
-- The content's checksum as a number (nil for none).
local function entry_checksum(e)
  if string.byte(e, 25) == 45 then return nil end
  return (struct.unpack('>I6', e, 26))
end
-- The content as `content_of` writes it: '-', or the type letter and the checksum in decimal.
local function entry_content(e)
  local sum = entry_checksum(e)
  if not sum then return '-' end
  return string.sub(e, 25, 25) .. string.format('%.0f', sum)
end
-- True when version `a` is newer than `b`: byte by byte, since Lua's own string order follows
-- the server's collation locale.
local function version_after(a, b)
  if a == b then return false end
  for i = 1, 17 do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x > y end
  end
  return false
end
-- Builds an entry: `version` binary, `kind` a letter, `hash` and `expiry` numbers (0: none),
-- `content` as `content_of` writes it.
local function entry_pack(version, kind, hash, content, expiry)
  local parts = {version, kind, struct.pack('>I6', hash), string.sub(content, 1, 1)}
  if content ~= '-' then parts[5] = struct.pack('>I6', tonumber(string.sub(content, 2))) end
  if expiry > 0 then parts[#parts + 1] = struct.pack('>I8', expiry) end
  return table.concat(parts)
end
