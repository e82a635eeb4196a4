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
local fields = {pool = ARGV[3], at = ARGV[4]}
local id = add_event(KEYS[1], ARGV[1], {'event', ARGV[2], 'pool', ARGV[3]}, fields, 5, ARGV[4])
notify_hand(notify_ns(KEYS[1]), ARGV[2], id, fields)
return id
