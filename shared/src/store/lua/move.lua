-- move: a job to a new state, atomically (see JobStore::apply and MoveArgs).
-- KEYS[1..5] the queue keys (see push)
-- KEYS[6] job
-- KEYS[7] events stream
-- KEYS[8] history
-- KEYS[9] run lease
-- ARGV[1] state index prefix
-- ARGV[2] new state
-- ARGV[3] now (ms)
-- ARGV[4] now (RFC 3339)
-- ARGV[5] expected seq or ''
-- ARGV[6] fencing token or ''
-- ARGV[7] events max length
-- ARGV[8] task id to push or ''
-- ARGV[9] run at (ms)
-- ARGV[10] front ('1')
-- ARGV[11] release ('1')
-- ARGV[12] bump attempt ('1')
-- ARGV[13] quiet ('1': no event when state and reason stay the same)
-- ARGV[14] namespace
-- ARGV[15] park: '', 'lane' or 'ws:{workspace}'
-- ARGV[16] keep slot ('1')
-- ARGV[17] reorder ('1': to the back of the line)
-- ARGV[18..] field/value pairs
-- Returns {status, seq, attempt, tries}: status -1 no record, 0 refused,
-- 1 done, -2/-3/-4 seq/attempt/tries is not a number (nothing written).
--- @include "push"
--- @include "enums"
local NS = ARGV[14]
--- @include "park"
--- @include "notify_hand"
--- @include "flow_end"
--- @include "timer_add"
local job, events, history, lease = KEYS[6], KEYS[7], KEYS[8], KEYS[9]
local state_prefix, new_state, now_ms, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local expect_seq, token, maxlen = ARGV[5], ARGV[6], ARGV[7]
local push_task, run_at, front = ARGV[8], ARGV[9], ARGV[10] == '1'
local release, bump, quiet = ARGV[11] == '1', ARGV[12] == '1', ARGV[13] == '1'
local park, keep_slot, reorder = ARGV[15], ARGV[16] == '1', ARGV[17] == '1'
open(job)
if redis.call('EXISTS', job) == 0 then return {-1, 0, 0, 0} end
if expect_seq ~= '' and redis.call('HGET', job, 'seq') ~= expect_seq then return {0, 0, 0, 0} end
if token ~= '' and redis.call('HGET', job, 'owner') ~= token then return {0, 0, 0, 0} end
-- Checked before anything is written: the numbers this move counts up.
if push_task ~= '' and not tonumber(redis.call('HGET', job, 'seq') or '0') then return {-2, 0, 0, 0} end
if bump then
  local n = redis.call('HMGET', job, 'attempt', 'tries')
  if not tonumber(n[1] or '0') then return {-3, 0, 0, 0} end
  if not tonumber(n[2] or '0') then return {-4, 0, 0, 0} end
end
local id = redis.call('HGET', job, 'id')
local old = redis.call('HGET', job, 'state')
local old_reason = redis.call('HGET', job, 'reason') or ''
local new_reason = old_reason
for i = 18, #ARGV, 2 do
  if ARGV[i] == 'reason' then new_reason = ARGV[i + 1] end
  redis.call('HSET', job, ARGV[i], ARGV[i + 1])
end
if reorder then redis.call('HSET', job, 'order', redis.call('INCR', K.order())) end
if bump then
  redis.call('HINCRBY', job, 'attempt', 1)
  redis.call('HINCRBY', job, 'tries', 1)
end
local seq = tonumber(redis.call('HGET', job, 'seq') or '0')
if push_task ~= '' then
  seq = redis.call('HINCRBY', job, 'seq', 1)
  redis.call('HSET', job, 'task', push_task, 'task_at', now_ms)
  redis.call('ZADD', K.transit(), run_at, id)
  push_delivery(push_task, id, seq, run_at, now_ms, front)
  wake()
  if pushed_now then
    redis.call('PUBLISH', K.deliver(), 1)
  else
    -- A delayed delivery (a retry): the timer loop moves it to the active
    -- list when due (see due.lua).
    add_timer(NS, DELIVERIES_TIMER, math.ceil(tonumber(run_at) / 1000) * 1000, true)
  end
end
if release or FINAL[new_state] then
  redis.call('HSET', job, 'owner', '')
  if token == '' or redis.call('GET', lease) == token then redis.call('DEL', lease) end
  if not keep_slot then unslot(job, id) end
end
if FINAL[new_state] then unpark(job, id) end
if FINAL[new_state] or ACTIVE[new_state] then redis.call('ZREM', K.transit(), id) end
if park == 'lane' then
  unpark(job, id)
  park_job(job, id, '')
elseif park ~= '' then
  unpark(job, id)
  park_job(job, id, string.sub(park, 4))
end
local f = redis.call('HMGET', job, 'attempt', 'tries', 'host', 'worker', 'error', 'question', 'exit_code')
local attempt, tries = tonumber(f[1] or '0') or 0, tonumber(f[2] or '0') or 0
if quiet and old == new_state and old_reason == new_reason then
  redis.call('HSET', job, 'updated_at', now)
  return {1, seq, attempt, tries}
end
if old then redis.call('ZREM', state_prefix .. old, id) end
redis.call('ZADD', state_prefix .. new_state, now_ms, id)
redis.call('HSET', job, 'state', new_state, 'updated_at', now)
local host = f[3] or ''
local event_id = redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', 'job', id, 'state', new_state,
  'from', old or '', 'attempt', attempt, 'host', host, 'at', now)
notify_job(NS, new_state, event_id, job, {state = new_state, from = old or '', at = now})
if FINAL[new_state] and old ~= new_state then job_ended(NS, id, new_state, maxlen) end
local entry = {state = new_state, from = old or '', at = now, attempt = attempt,
  host = host, worker = f[4] or '', reason = new_reason}
if new_state == ST.Waiting or new_state == ST.Failed or new_state == ST.Queued
  or new_state == ST.TimedOut then entry.error = f[5] or '' end
if new_state == ST.Blocked then entry.question = f[6] or '' end
if new_state == ST.Failed or new_state == ST.Blocked or new_state == ST.TimedOut then
  entry.exit_code = f[7] or ''
end
redis.call('RPUSH', history, cjson.encode(entry))
redis.call('LTRIM', history, -200, -1)
-- `--wait` (JobStore::wait_final) wakes on this instead of polling.
redis.call('PUBLISH', K.moved(id), new_state)
return {1, seq, attempt, tries}
