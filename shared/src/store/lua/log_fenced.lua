-- log_fenced: appends log chunks as the run holding the token.
-- KEYS[1] job
-- KEYS[2] log stream
-- ARGV[1] token
-- ARGV[2] max length
-- ARGV[3..] chunks
-- Returns 1 when written, 0 when the job's owner is another.
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
for i = 3, #ARGV do
  redis.call('XADD', KEYS[2], 'MAXLEN', '=', ARGV[2], '*', 'd', ARGV[i])
end
return 1
