
local M = 281474976710656
-- 2^62 = 2^14 * M: taking it off a field leaves the field's value mod M unchanged.
local FOLD = 4611686018427387904
-- Adds `delta` to the digest in field `field` of hash `hash`, or, when `field` is empty, to
-- the digest that the string key `hash` holds alone (a bucket digest under the slot
-- placement, `DigestField::String`).
local function add_digest(hash, field, delta)
  delta = delta % M
  if delta == 0 then return end
  -- One HINCRBY (INCRBY), done by Redis in exact int64 arithmetic (`%d`: `tostring` rounds to
  -- 14 digits, and `%.0f` costs twice as much). Every delta is in [0, M), so a digest only
  -- grows, and is folded back by FOLD before it can overflow; readers reduce it mod M.
  if field == '' then
    if redis.call('INCRBY', hash, string.format('%d', delta)) >= FOLD then
      redis.call('INCRBY', hash, '-4611686018427387904')
    end
  elseif redis.call('HINCRBY', hash, field, string.format('%d', delta)) >= FOLD then
    redis.call('HINCRBY', hash, field, '-4611686018427387904')
  end
end
