-- release_scheduled: the delayed jobs that are due (a bounded batch) leave
-- {ns}:scheduled for their lanes as `queued`, at the back of the line (a new
-- place), and their pools are woken; the timer (member ARGV[5] of
-- {ns}:timers) is set again to the next due time, if any.
-- KEYS[1] events stream
-- ARGV[1] namespace
-- ARGV[2] job key prefix
-- ARGV[3] most jobs to move
-- ARGV[4] now (RFC 3339)
-- ARGV[5] the timer's member (keys::SCHEDULED_TIMER)
-- ARGV[6] events max length
-- Returns how many jobs were due (moved or dropped: cancelled, purged).
local NS, JOB_PREFIX = ARGV[1], ARGV[2]
--- @include "park"
--- @include "enums"
--- @include "redis_now"
--- @include "timer_add"
local most, now, timer, maxlen = tonumber(ARGV[3]), ARGV[4], ARGV[5], ARGV[6]
local now_ms = redis_now_ms()
local sched = K.scheduled()
local due = redis.call('ZRANGEBYSCORE', sched, '-inf', now_ms, 'LIMIT', 0, most)
local moved = 0
for _, id in ipairs(due) do
  redis.call('ZREM', sched, id)
  local job = JOB_PREFIX .. id
  open(job)
  if redis.call('HGET', job, 'state') == ST.Scheduled then
    local order = redis.call('INCR', K.order())
    redis.call('ZREM', K.state(ST.Scheduled), id)
    redis.call('ZADD', K.state(ST.Queued), now_ms, id)
    redis.call('HSET', job, 'state', ST.Queued, 'updated_at', now, 'order', order, 'parked', '')
    park_job(job, id, '')
    local h = K.history(id)
    redis.call('RPUSH', h, cjson.encode({state = ST.Queued, from = ST.Scheduled, at = now,
      attempt = 0, host = '', worker = '', reason = ''}))
    redis.call('LTRIM', h, -200, -1)
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*', 'job', id, 'state', ST.Queued,
      'from', ST.Scheduled, 'attempt', 0, 'host', '', 'at', now)
    moved = moved + 1
  end
end
local next = redis.call('ZRANGE', sched, 0, 0, 'WITHSCORES')
if #next > 0 then add_timer(NS, timer, next[2], true) end
return #due
