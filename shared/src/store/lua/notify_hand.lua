-- Snippet notify_hand: hands an event to the notification outbox inside the
-- script that records the event, so the hand-off is exactly as durable as the
-- move itself and nothing depends on reading the (trimmed) events stream late
-- (see store/outbox.rs and docs/ARCHITECTURE.md, "Notifications").
-- notify_hand(ns, name, event_id, fields): one outbox item per receiver that
-- asked for `name` ({ns}:notify:routes, written by the workers from
-- [[notify]]); none when no receiver did. notify_job(...) adds the job's
-- fields first. At the outbox's bound the oldest item is dead-lettered and
-- counted ({ns}:notify:overflowed), never dropped silently.
-- KEYS: none (writes the {ns}:notify:* keys by name)
-- ARGV: none
--- @include "redis_now"
--- @include "keys"
local function notify_dead(ns, item, why, now)
  local N = keys_for(ns).notify
  local items = N('items')
  local raw = redis.call('HGET', items, item)
  redis.call('HDEL', items, item)
  redis.call('ZREM', N('due'), item)
  redis.call('ZREM', N('age'), item)
  if raw then
    local ok, e = pcall(cjson.decode, raw)
    if ok and type(e) == 'table' then
      e.dead_reason = why
      e.dead_ms = now
      raw = cjson.encode(e)
    end
    redis.call('LPUSH', N('dead'), raw)
    redis.call('LTRIM', N('dead'), 0, 999)
  end
  redis.call('INCR', N('dead_total'))
end
local function notify_hand(ns, name, event_id, fields)
  local N = keys_for(ns).notify
  local routes = N('routes')
  local rids = redis.call('HGET', routes, name)
  if not rids or rids == '' then return end
  local max = tonumber(redis.call('HGET', routes, '#max') or '') or 10000
  local now = redis_now_ms()
  fields.id = ns .. ':' .. event_id
  fields.event = name
  fields.created_ms = now
  fields.tries = 0
  for rid in string.gmatch(rids, '%S+') do
    fields.receiver = rid
    local item = event_id .. '/' .. rid
    redis.call('HSET', N('items'), item, cjson.encode(fields))
    redis.call('ZADD', N('due'), now, item)
    redis.call('ZADD', N('age'), now, item)
  end
  while redis.call('ZCARD', N('age')) > max do
    local oldest = redis.call('ZRANGE', N('age'), 0, 0)[1]
    notify_dead(ns, oldest, 'outbox full', now)
    redis.call('INCR', N('overflowed'))
  end
end
-- The namespace of an events stream key ({ns}:events).
local function notify_ns(events_key)
  local ns = string.sub(events_key, 1, -8)
  assert(keys_for(ns).events() == events_key, 'not an events key: ' .. events_key)
  return ns
end
local function notify_job(ns, name, event_id, job, extra)
  local N = keys_for(ns).notify
  local routes = N('routes')
  if redis.call('HEXISTS', routes, name) == 0 then return end
  local f = redis.call('HMGET', job, 'id', 'pool', 'input', 'question', 'pr_url', 'host',
    'reason', 'error', 'attempt', 'branch', 'exit_code')
  local fields = {job = f[1] or '', pool = f[2] or '', question = f[4] or '',
    pr_url = f[5] or '', host = f[6] or '', reason = f[7] or '', error = f[8] or '',
    attempt = f[9] or '', branch = f[10] or '', exit_code = f[11] or ''}
  local ok, input = pcall(cjson.decode, f[3] or '')
  if ok and type(input) == 'table' then
    for _, k in ipairs({'agent', 'repo', 'org', 'issue', 'pr'}) do
      local v = input[k]
      if type(v) == 'string' or type(v) == 'number' then fields[k] = v end
    end
  end
  for k, v in pairs(extra) do fields[k] = v end
  notify_hand(ns, name, event_id, fields)
end
-- Adds an event to stream `events` (trimmed to `maxlen`): `args` first, then
-- the field/value pairs of ARGV from `from` on (also put in `fields`), then
-- `at`. Returns the entry's id.
local function add_event(events, maxlen, args, fields, from, at)
  for i = from, #ARGV, 2 do
    table.insert(args, ARGV[i])
    table.insert(args, ARGV[i + 1])
    fields[ARGV[i]] = ARGV[i + 1]
  end
  table.insert(args, 'at')
  table.insert(args, at)
  return redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', unpack(args))
end
