-- Snippet flow_end: what a job's end does to the jobs that wait for it and to
-- its batch (see store::flow), in the same call as the move that ends it.
-- job_ended(ns, id, state, maxlen): job `id` just reached final `state`.
--   Its dependants ({ns}:dependants:{id}) are read and the set deleted: a
--   dependant still waiting (reason dependency) counts one parent less after
--   `completed`/`merged` (any end with `after_any`) and is parked in its lane,
--   queued, at zero; after any other end it is cancelled, naming the parent,
--   and that cascades (iteratively) to its own dependants. A batch member is
--   noted done ({ns}:batchdone:{name}); a sealed batch whose members are all
--   done adds one `batch_done` event (and hands it to the outbox) exactly
--   once ({ns}:batch:{name} `fired`, HSETNX).
-- flow_batch_check(ns, name, maxlen): that last check, for batch_seal.
-- flow_release(job, id, now_ms, at, maxlen) and flow_cancel(...): the moves.
-- Needs a local NS before it (park). Sets open's flow_hook, so a job the
-- open prelude fails (record unreadable) ends here too.
-- KEYS: none (builds every key with K)
-- ARGV: none
--- @include "enums"
--- @include "keys"
--- @include "park"
--- @include "notify_hand"
-- RFC 3339 (UTC, ms) of `ms` since the epoch.
local function flow_iso(ms)
  local s = math.floor(ms / 1000)
  local z = math.floor(s / 86400) + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local d = doy - math.floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400
  if m <= 2 then y = y + 1 end
  local sod = s % 86400
  return string.format('%04d-%02d-%02dT%02d:%02d:%02d.%03dZ', y, m, d, math.floor(sod / 3600),
    math.floor(sod % 3600 / 60), sod % 60, ms % 1000)
end
-- Moves a job that waits for its parents (no lane, no delivery, no slot) to
-- `to`, with its index, history and event.
local function flow_set(job, id, to, now_ms, at, maxlen, err)
  local FK = keys_for(ns_of_job(job, id))
  local from = redis.call('HGET', job, 'state') or ''
  if from ~= '' then redis.call('ZREM', FK.state(from), id) end
  redis.call('ZADD', FK.state(to), now_ms, id)
  redis.call('HSET', job, 'state', to, 'updated_at', at)
  local entry = {state = to, from = from, at = at, attempt = 0, host = '', worker = '', reason = ''}
  if err then entry.error = err end
  redis.call('RPUSH', FK.history(id), cjson.encode(entry))
  redis.call('LTRIM', FK.history(id), -200, -1)
  redis.call('XADD', FK.events(), 'MAXLEN', '~', maxlen, '*', 'job', id, 'state', to,
    'from', from, 'attempt', 0, 'host', '', 'at', at)
end
local function flow_release(job, id, now_ms, at, maxlen)
  redis.call('HSET', job, 'reason', '', 'deps_pending', 0)
  flow_set(job, id, ST.Queued, now_ms, at, maxlen, nil)
  park_job(job, id, '')
end
local function flow_cancel(job, id, parent, why, now_ms, at, maxlen)
  local err = 'parent ' .. parent .. ' ' .. why
  redis.call('HSET', job, 'reason', '', 'error', err, 'finished_at', at, 'owner', '')
  unpark(job, id)
  redis.call('ZREM', K.transit(), id)
  flow_set(job, id, ST.Cancelled, now_ms, at, maxlen, err)
end
local function flow_batch_check(ns, name, maxlen)
  local FK = keys_for(ns)
  local b = FK.batch(name)
  if redis.call('HGET', b, 'sealed') ~= '1' then return end
  local total = redis.call('SCARD', FK.batch_jobs(name))
  local done = redis.call('HLEN', FK.batch_done(name))
  if total == 0 or done < total then return end
  if redis.call('HSETNX', b, 'fired', 1) == 0 then return end
  local ok = 0
  for _, st in ipairs(redis.call('HVALS', FK.batch_done(name))) do
    if st == ST.Completed or st == ST.Merged then ok = ok + 1 end
  end
  local at = flow_iso(redis_now_ms())
  local eid = redis.call('XADD', FK.events(), 'MAXLEN', '~', maxlen, '*', 'event', 'batch_done',
    'batch', name, 'jobs', total, 'completed', ok, 'failed', total - ok, 'at', at)
  notify_hand(ns, 'batch_done', eid, {batch = name, jobs = total, completed = ok,
    failed = total - ok, at = at})
end
local function job_ended(ns, first, first_state, maxlen)
  local FK = keys_for(ns)
  local now_ms = redis_now_ms()
  local at = flow_iso(now_ms)
  local todo = {{first, first_state}}
  local n = 1
  while n <= #todo do
    local id, st = todo[n][1], todo[n][2]
    n = n + 1
    local job = FK.job(id)
    local batch = redis.call('HGET', job, 'batch')
    if batch and batch ~= '' then
      redis.call('HSET', FK.batch_done(batch), id, st)
      flow_batch_check(ns, batch, maxlen)
    end
    local deps = FK.dependants(id)
    local kids = redis.call('SMEMBERS', deps)
    if #kids > 0 then redis.call('DEL', deps) end
    for _, kid in ipairs(kids) do
      local kjob = FK.job(kid)
      open(kjob)
      local f = redis.call('HMGET', kjob, 'state', 'reason', 'after_any', 'deps_pending')
      if f[1] == ST.Waiting and f[2] == WR.Dependency then
        if st == ST.Completed or st == ST.Merged or f[3] == '1' then
          local left = redis.call('HINCRBY', kjob, 'deps_pending', -1)
          if left <= 0 then flow_release(kjob, kid, now_ms, at, maxlen) end
        else
          flow_cancel(kjob, kid, id, st, now_ms, at, maxlen)
          table.insert(todo, {kid, ST.Cancelled})
        end
      end
    end
  end
end
flow_hook = function(job, id) job_ended(ns_of_job(job, id), id, ST.Failed, 10000) end
