-- set_fenced: sets fields of a job as the run holding the token.
-- KEYS[1] job
-- ARGV[1] token
-- ARGV[2..] field/value pairs
-- Returns 1 when written, 0 when the job's owner is another.
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
for i = 2, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
return 1
