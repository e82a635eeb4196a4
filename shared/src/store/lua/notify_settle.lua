-- notify_settle: records what sending one outbox item gave, if this worker
-- still holds the notify lease (see JobStore::settle_notification).
-- KEYS[1] the notify lease
-- ARGV[1] namespace
-- ARGV[2] worker id (the lease's holder)
-- ARGV[3] item id
-- ARGV[4] outcome: 'sent', 'retry' or 'dead'
-- ARGV[5] next try at (ms, for 'retry')
-- ARGV[6] the error or the receiver's answer (bounded by the caller)
-- ARGV[7] the receiver's HTTP status ('' when none)
-- Returns 1 done, 0 not the lease holder, -1 no such item.
--- @include "notify_hand"
local ns, item, outcome = ARGV[1], ARGV[3], ARGV[4]
local N = keys_for(ns).notify
if redis.call('GET', KEYS[1]) ~= ARGV[2] then return 0 end
local items = N('items')
local raw = redis.call('HGET', items, item)
if not raw then return -1 end
local now = redis_now_ms()
local ok, e = pcall(cjson.decode, raw)
if not ok or type(e) ~= 'table' then e = {id = item} end
e.tries = (tonumber(e.tries) or 0) + 1
e.last_error = ARGV[6]
e.last_status = ARGV[7]
e.last_ms = now
if outcome == 'sent' then
  redis.call('HDEL', items, item)
  redis.call('ZREM', N('due'), item)
  redis.call('ZREM', N('age'), item)
  e.sent_ms = now
  redis.call('LPUSH', N('sent'), cjson.encode(e))
  redis.call('LTRIM', N('sent'), 0, 199)
  redis.call('INCR', N('sent_total'))
elseif outcome == 'retry' then
  redis.call('HSET', items, item, cjson.encode(e))
  redis.call('ZADD', N('due'), ARGV[5], item)
else
  redis.call('HSET', items, item, cjson.encode(e))
  notify_dead(ns, item, ARGV[6], now)
end
return 1
