-- Where a node keeps the highest ballot it promised to read-modify-writes of `key` (see
-- `store/prepare.lua`): a string beside the key's metadata hash, so in the key's slot, and
-- under quorumd's prefix, so no user command or sweep ever takes it for a user key.
local function promise_key(mkey, key)
  return mkey .. '|p|' .. key
end
