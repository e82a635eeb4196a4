-- Snippet push: push_delivery(task_id, job_id, seq, run_at_ms, now_ms, front)
-- writes one delivery as apalis-redis 1.0 would (task data is the JSON of a
-- Delivery); front puts it at the head of the active list. wake() signals idle
-- workers once a script pushed something due now.
-- KEYS[1] apalis task data hash
-- KEYS[2] apalis active list
-- KEYS[3] apalis signal list
-- KEYS[4] apalis task metadata prefix
-- KEYS[5] apalis scheduled set
-- ARGV: none
local Q_DATA, Q_ACTIVE, Q_SIGNAL, Q_META, Q_SCHEDULED = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local pushed_now = false
local function push_delivery(task_id, job_id, seq, run_at_ms, now_ms, front)
  redis.call('HSET', Q_DATA, task_id, cjson.encode({job_id = job_id, seq = tonumber(seq)}))
  redis.call('HSET', Q_META .. ':' .. task_id, 'attempts', 0, 'max_attempts', 25,
    'status', 'Pending', 'idempotency_key', '')
  local at = tonumber(run_at_ms)
  if at > tonumber(now_ms) then
    -- apalis schedules in whole seconds
    redis.call('ZADD', Q_SCHEDULED, math.ceil(at / 1000), task_id)
  elseif front then
    redis.call('LPUSH', Q_ACTIVE, task_id)
    pushed_now = true
  else
    redis.call('RPUSH', Q_ACTIVE, task_id)
    pushed_now = true
  end
end
local function wake()
  if pushed_now then
    redis.call('DEL', Q_SIGNAL)
    redis.call('LPUSH', Q_SIGNAL, 1)
  end
end
