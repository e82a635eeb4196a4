-- job_event: adds a job's event (needs_review) to the events stream and hands
-- it, with the job's fields, to the notification outbox in the same call (see
-- JobStore::add_needs_review_event).
-- KEYS[1] events stream
-- KEYS[2] the job's hash
-- ARGV[1] events max length
-- ARGV[2] event name
-- ARGV[3] job id
-- ARGV[4] now (RFC 3339)
-- ARGV[5..] more field/value pairs
-- Returns the stream entry's id.
--- @include "notify_hand"
local args = {'event', ARGV[2], 'job', ARGV[3]}
local extra = {at = ARGV[4]}
for i = 5, #ARGV, 2 do
  table.insert(args, ARGV[i])
  table.insert(args, ARGV[i + 1])
  extra[ARGV[i]] = ARGV[i + 1]
end
table.insert(args, 'at')
table.insert(args, ARGV[4])
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', unpack(args))
notify_job(notify_ns(KEYS[1]), ARGV[2], id, KEYS[2], extra)
return id
