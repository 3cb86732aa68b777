-- Announces this call's writes of user keys to the live detection of changes made outside
-- quorumd (docs/ARCHITECTURE.md, decision 37). The caller passes the channel as the last
-- argument, '' when no subscriber needs it (OWN_ARGS: the arguments before it). A script
-- runs atomically, so the key events a subscriber receives between `begin` and `end` were
-- all caused by this call, and need no VERIFY.
local OWN_CHANNEL = ARGV[#ARGV]
local OWN_ARGS = #ARGV - 1
local own_open = false
-- Called before each write of a user key: the first one opens the announcement, once per call.
local function own_begin()
  if not own_open and OWN_CHANNEL ~= '' then
    redis.call('PUBLISH', OWN_CHANNEL, 'begin')
    own_open = true
  end
end
-- Runs the script's body and closes the announcement however the body ends: after a `begin`
-- without its `end`, the subscriber would take direct writes for quorumd's own until the next.
local function own_run(body)
  local ok, result = pcall(body)
  if own_open then redis.call('PUBLISH', OWN_CHANNEL, 'end') end
  if not ok then
    -- Under pcall a node's error reply arrives as its text: raised as a table again, it keeps
    -- its code (WRONGTYPE, ...), as it would have without the pcall; a Lua error stays one.
    if type(result) == 'string' and string.match(result, '^%u+ ') then error({err = result}) end
    error(result, 0)
  end
  return result
end
