-- rescue: parks an orphaned or lost job again (see store::sweep and RescueArgs).
-- KEYS[1..5] the queue keys (see push)
-- KEYS[6] job
-- KEYS[7] run lease
-- KEYS[8] events stream
-- KEYS[9] history
-- KEYS[10] apalis workers set
-- KEYS[11] rescued counter
-- ARGV[1] state index prefix
-- ARGV[2] now (ms)
-- ARGV[3] now (RFC 3339)
-- ARGV[4] events max length
-- ARGV[5] grace (ms)
-- ARGV[6] namespace
-- ARGV[7] in-flight set prefix
-- Returns '' (left alone), 'unreadable', or the reason it was put back
-- (WR.Orphaned, WR.Lost).
--- @include "push"
--- @include "enums"
local NS = ARGV[6]
--- @include "park"
--- @include "flow_end"
local job, lease, events, history, workers, rescued = KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10], KEYS[11]
local state_prefix, now_ms, now, maxlen, grace = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4], tonumber(ARGV[5])
local inflight_prefix = ARGV[7]
open(job)
if redis.call('EXISTS', job) == 0 then return '' end
local id = string.match(job, '[^:]*$')
local state = redis.call('HGET', job, 'state')
if FINAL[state] then
  redis.call('ZREM', K.transit(), id)
  return ''
end
if redis.call('EXISTS', lease) == 1 then return '' end
-- Checked before anything is written: the rescue writes `seq`.
local seq = redis.call('HGET', job, 'seq')
if not tonumber(seq or '0') then
  fail_unreadable(job, id, 'seq', '`' .. seq .. '` is not a number')
  unslot(job, id)
  unpark(job, id)
  return 'unreadable'
end
local reason = WR.Orphaned
if not ACTIVE[state] then
  if (redis.call('HGET', job, 'parked') or '') ~= '' then
    redis.call('ZREM', K.transit(), id)
    return ''
  end
  local cur = redis.call('HGET', job, 'task') or ''
  local at = tonumber(redis.call('HGET', job, 'task_at') or '0') or 0
  if at > now_ms - grace then return '' end
  if cur ~= '' then
    if redis.call('ZSCORE', Q_SCHEDULED, cur) then return '' end
    if redis.call('LPOS', Q_ACTIVE, cur) then return '' end
    for _, w in ipairs(redis.call('ZRANGE', workers, 0, -1)) do
      if redis.call('SISMEMBER', inflight_prefix .. ':' .. w, cur) == 1 then return '' end
    end
  end
  reason = WR.Lost
  redis.call('INCR', rescued)
end
redis.call('HINCRBY', job, 'seq', 1)
redis.call('HSET', job, 'owner', '', 'reason', reason, 'task', '', 'task_at', now_ms,
  'state', ST.Waiting, 'updated_at', now)
redis.call('ZREM', state_prefix .. state, id)
redis.call('ZADD', state_prefix .. ST.Waiting, now_ms, id)
unslot(job, id)
park_job(job, id, '')
local f = redis.call('HMGET', job, 'attempt', 'host', 'worker')
redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', 'job', id, 'state', ST.Waiting,
  'from', state, 'attempt', f[1] or '0', 'host', f[2] or '', 'at', now)
redis.call('RPUSH', history, cjson.encode({state = ST.Waiting, from = state, at = now,
  attempt = tonumber(f[1] or '0') or 0, host = f[2] or '', worker = f[3] or '', reason = reason}))
redis.call('LTRIM', history, -200, -1)
return reason
