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
local extra = {at = ARGV[4]}
local id = add_event(KEYS[1], ARGV[1], {'event', ARGV[2], 'job', ARGV[3]}, extra, 5, ARGV[4])
notify_job(notify_ns(KEYS[1]), ARGV[2], id, KEYS[2], extra)
return id
