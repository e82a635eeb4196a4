-- Snippet bulk: the prelude of cancel_many and retry_many.
-- history(id, state, from), set_state(job, id, from, to), and
-- each_job(event, act), which runs act on each id from ARGV[11] on.
-- KEYS[1] events stream
-- ARGV[1] namespace
-- ARGV[2] job key prefix
-- ARGV[3] state index prefix
-- ARGV[4] now (ms)
-- ARGV[5] now (RFC 3339)
-- ARGV[6] run lease prefix
-- ARGV[7] cancel flag prefix
-- ARGV[8] history prefix
-- ARGV[9] events max length
-- ARGV[10] the state the jobs were selected in ('' when named by id)
-- ARGV[11..] job ids
--- @include "open"
local NS, JOB_PREFIX, STATE_PREFIX = ARGV[1], ARGV[2], ARGV[3]
local NOW_MS, NOW, RUN_PREFIX, CANCEL_PREFIX, HISTORY_PREFIX, MAXLEN = ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9]
local SELECTED = ARGV[10]
local function history(id, state, from)
  local h = HISTORY_PREFIX .. id
  redis.call('RPUSH', h, cjson.encode({state = state, from = from, at = NOW, attempt = 0, host = '', worker = '', reason = ''}))
  redis.call('LTRIM', h, -200, -1)
end
local function set_state(job, id, from, to)
  redis.call('ZREM', STATE_PREFIX .. from, id)
  redis.call('ZADD', STATE_PREFIX .. to, NOW_MS, id)
  redis.call('HSET', job, 'state', to, 'updated_at', NOW)
  history(id, to, from)
end
-- Runs act(job, id, state) on each job named in ARGV from 11 on; act returns
-- the state it moved the job to, or nil to leave it. Answers per id: '' (no
-- such job), else the job's state after; one `event` for all moved jobs.
local function each_job(event, act)
  local out, n = {}, 0
  for i = 11, #ARGV do
    local id = ARGV[i]
    local job = JOB_PREFIX .. id
    open(job)
    local st = redis.call('HGET', job, 'state')
    if not st then
      table.insert(out, '')
    else
      local to = act(job, id, st)
      if to then n = n + 1 end
      table.insert(out, to or st)
    end
  end
  if n > 0 then
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', MAXLEN, '*', 'event', event, 'jobs', n, 'at', NOW)
  end
  return out
end
