-- Snippet park: park_job(job, id, ws) puts a job in its lane (ws empty) or in
-- workspace ws's line; unpark(job, id) takes it out of wherever it is parked
-- (a lane, a workspace's line, or {ns}:scheduled for a delayed job);
-- unslot(job, id) gives its slot back and wakes its pool.
-- Needs a local NS (the namespace) before it; builds its keys with K
-- (the include `keys`: agentq_domain::keys::Keys).
-- KEYS: none
-- ARGV: none
--- @include "open"
--- @include "keys"
local K = keys_for(NS)
-- A job's lane in its pool: its model (`-`: none), with `~high`/`~low` for a
-- priority other than normal (agentq_domain::priority::Priority::lane).
local function lane_model(model, prio)
  if not model or model == '' then model = '-' end
  if prio and prio ~= '' and prio ~= 'normal' then return model .. '~' .. prio end
  return model
end
local function park_job(job, id, ws)
  open(job)
  local f = redis.call('HMGET', job, 'pool', 'model', 'order', 'prio')
  local pool, model, order = f[1] or '', lane_model(f[2], f[4]), tonumber(f[3] or '0') or 0
  redis.call('ZREM', K.transit(), id)
  if ws ~= '' then
    redis.call('ZADD', K.workspace_waiters(ws), order, id)
    redis.call('SADD', K.queued_workspaces(), ws)
    redis.call('HSET', job, 'parked', 'ws:' .. ws)
  else
    redis.call('ZADD', K.lane(pool, model), order, id)
    redis.call('SADD', K.lanes(pool), model)
    redis.call('SADD', K.pools(), pool)
    redis.call('HSET', job, 'parked', 'lane')
    redis.call('PUBLISH', K.wake(), pool)
  end
end
local function unpark(job, id)
  open(job)
  local f = redis.call('HMGET', job, 'parked', 'pool', 'model', 'prio')
  local where = f[1] or ''
  if where == 'lane' then
    redis.call('ZREM', K.lane(f[2] or '', lane_model(f[3], f[4])), id)
  elseif where == 'scheduled' then
    redis.call('ZREM', K.scheduled(), id)
  elseif string.sub(where, 1, 3) == 'ws:' then
    redis.call('ZREM', K.workspace_waiters(string.sub(where, 4)), id)
  end
  if where ~= '' then redis.call('HSET', job, 'parked', '') end
end
local function unslot(job, id)
  open(job)
  local f = redis.call('HMGET', job, 'pool', 'model')
  local pool, model = f[1] or '', f[2] or ''
  if pool == '' then return end
  local freed = redis.call('ZREM', K.limit(pool), id)
  if model ~= '' then redis.call('ZREM', K.limit_model(pool, model), id) end
  if freed == 1 then redis.call('PUBLISH', K.wake(), pool) end
end
