-- Snippet timer_add: add_timer(ns, member, at_ms, sooner_only) puts `member`
-- in `{ns}:timers` due at `at_ms` (ms, Redis's clock) and, when that makes it
-- due before every other timer, publishes `at_ms` on `{ns}:timer`. Workers
-- wait for the first due time only (worker/src/waker.rs): the publish makes
-- them look again. With `sooner_only`, an earlier due time already there
-- stands. Every script that adds to `{ns}:timers` adds through here.
-- DELIVERIES_TIMER is the member that stands for apalis's scheduled set (the
-- first delayed delivery's due time; see due.lua).
-- KEYS: none
-- ARGV: none
--- @include "keys"
local DELIVERIES_TIMER = '@deliveries'
local function add_timer(ns, member, at_ms, sooner_only)
  local TK = keys_for(ns)
  local set = TK.timers()
  local first = redis.call('ZRANGE', set, 0, 0, 'WITHSCORES')
  if sooner_only then
    redis.call('ZADD', set, 'LT', at_ms, member)
  else
    redis.call('ZADD', set, at_ms, member)
  end
  if #first == 0 or tonumber(at_ms) < tonumber(first[2]) then
    redis.call('PUBLISH', TK.timer_wake(), at_ms)
  end
end
