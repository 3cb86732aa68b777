
local M = 281474976710656
-- 2^62 = 2^14 * M: taking it off a field leaves the field's value mod M unchanged.
local FOLD = 4611686018427387904
local function add_digest(hash, field, delta)
  delta = delta % M
  if delta == 0 then return end
  -- One HINCRBY, done by Redis in exact int64 arithmetic (`%d`: `tostring` rounds to 14 digits,
  -- and `%.0f` costs twice as much). Every delta is in [0, M), so a field only grows, and is
  -- folded back by FOLD before it can overflow; readers reduce it mod M.
  if redis.call('HINCRBY', hash, field, string.format('%d', delta)) >= FOLD then
    redis.call('HINCRBY', hash, field, '-4611686018427387904')
  end
end
