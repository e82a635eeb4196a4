-- pool_event: adds a pool event to the events stream and hands it to the
-- notification outbox in the same call (see JobStore::pool_event).
-- KEYS[1] events stream
-- ARGV[1] events max length
-- ARGV[2] event name (pool_paused, pool_resumed, queue_drained)
-- ARGV[3] pool
-- ARGV[4] now (RFC 3339)
-- ARGV[5..] more field/value pairs
-- Returns the stream entry's id.
--- @include "notify_hand"
local args = {'event', ARGV[2], 'pool', ARGV[3]}
local fields = {pool = ARGV[3], at = ARGV[4]}
for i = 5, #ARGV, 2 do
  table.insert(args, ARGV[i])
  table.insert(args, ARGV[i + 1])
  fields[ARGV[i]] = ARGV[i + 1]
end
table.insert(args, 'at')
table.insert(args, ARGV[4])
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', unpack(args))
notify_hand(notify_ns(KEYS[1]), ARGV[2], id, fields)
return id
