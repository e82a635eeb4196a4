-- Snippet park: park_job(job, id, ws) puts a job in its lane (ws empty) or in
-- workspace ws's line; unpark(job, id) takes it out of wherever it is parked;
-- unslot(job, id) gives its slot back and wakes its pool.
-- Needs a local NS (the namespace) before it.
-- KEYS: none
-- ARGV: none
--- @include "open"
local function lane_model(model) if not model or model == '' then return '-' end return model end
local function park_job(job, id, ws)
  open(job)
  local f = redis.call('HMGET', job, 'pool', 'model', 'order')
  local pool, model, order = f[1] or '', lane_model(f[2]), tonumber(f[3] or '0') or 0
  redis.call('ZREM', NS .. ':transit', id)
  if ws ~= '' then
    redis.call('ZADD', NS .. ':wsq:' .. ws, order, id)
    redis.call('SADD', NS .. ':wsqueued', ws)
    redis.call('HSET', job, 'parked', 'ws:' .. ws)
  else
    redis.call('ZADD', NS .. ':lane:' .. pool .. ':' .. model, order, id)
    redis.call('SADD', NS .. ':lanes:' .. pool, model)
    redis.call('SADD', NS .. ':pools', pool)
    redis.call('HSET', job, 'parked', 'lane')
    redis.call('PUBLISH', NS .. ':wake', pool)
  end
end
local function unpark(job, id)
  open(job)
  local f = redis.call('HMGET', job, 'parked', 'pool', 'model')
  local where = f[1] or ''
  if where == 'lane' then
    redis.call('ZREM', NS .. ':lane:' .. (f[2] or '') .. ':' .. lane_model(f[3]), id)
  elseif string.sub(where, 1, 3) == 'ws:' then
    redis.call('ZREM', NS .. ':wsq:' .. string.sub(where, 4), id)
  end
  if where ~= '' then redis.call('HSET', job, 'parked', '') end
end
local function unslot(job, id)
  open(job)
  local f = redis.call('HMGET', job, 'pool', 'model')
  local pool, model = f[1] or '', f[2] or ''
  if pool == '' then return end
  local freed = redis.call('ZREM', NS .. ':limit:' .. pool, id)
  if model ~= '' then redis.call('ZREM', NS .. ':limit:' .. pool .. ':' .. model, id) end
  if freed == 1 then redis.call('PUBLISH', NS .. ':wake', pool) end
end
