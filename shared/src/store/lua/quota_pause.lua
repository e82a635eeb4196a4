-- quota_pause: pauses a pool on every host until its provider's usage limit
-- resets (a longer pause already there stands), and says so on the events
-- stream (see JobStore::pause_for_quota).
-- KEYS[1] the pool's pause key
-- KEYS[2] events stream
-- ARGV[1] pause (ms)
-- ARGV[2] the pause key's value (`until|quota`)
-- ARGV[3] pool
-- ARGV[4] resume at (RFC 3339)
-- ARGV[5] the output line that said so (made visible, cut)
-- ARGV[6] job id
-- ARGV[7] events max length
-- ARGV[8] now (RFC 3339)
-- ARGV[9] namespace
-- Returns the pause left (ms) after this call.
--- @include "redis_now"
--- @include "notify_hand"
--- @include "timer_add"
local ms = tonumber(ARGV[1])
local left = redis.call('PTTL', KEYS[1])
if left < ms then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ms)
  left = ms
end
-- The pool is woken when the pause ends, whoever parks there meanwhile.
add_timer(ARGV[9], ARGV[3], redis_now_ms() + left, false)
local event_id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[7], '*', 'event', 'quota', 'pool', ARGV[3],
  'until', ARGV[4], 'resume_at', ARGV[4], 'job', ARGV[6], 'line', ARGV[5], 'at', ARGV[8])
notify_hand(ARGV[9], 'quota', event_id, {pool = ARGV[3], ['until'] = ARGV[4], job = ARGV[6], line = ARGV[5], at = ARGV[8]})
return left
