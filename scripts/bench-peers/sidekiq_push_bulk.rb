# Peer benchmark: Sidekiq batch-enqueue throughput against a given Redis.
#
# Usage: ruby scripts/bench-peers/sidekiq_push_bulk.rb REDIS_URL N
#   (needs Debian's ruby-sidekiq: scripts/bench-peers/setup installs it)
#
# Pushes N jobs of BenchJob, each with one small hash argument, with
# Sidekiq::Client.push_bulk in batches of 1,000 (Sidekiq 7's default
# batch_size; Sidekiq 6.x has no batching of its own, so we slice here).
# Only the pushing is timed (monotonic wall clock); the argument list is built
# and the Redis connection opened before the clock starts. Nothing is flushed:
# the caller gives a fresh Redis. Prints exactly one JSON line on stdout:
#   {"peer":"sidekiq","version":"6.4.1","jobs":N,"seconds":S,"jobs_per_s":R}
require "json"
require "logger"
require "sidekiq"

url = ARGV[0]
n = Integer(ARGV[1].to_s, exception: false)
abort("usage: ruby #{$0} REDIS_URL N") if url.nil? || n.nil? || n <= 0
BATCH = 1_000

# Silence Sidekiq's logging; stdout carries only the JSON line.
Sidekiq.logger = Logger.new(IO::NULL)
# ...and redis-rb 4.8's per-batch "Redis#sadd will always return an Integer" warning
# (Sidekiq 7 uses redis-client, so there may be no Redis constant).
Redis.silence_deprecations = true if defined?(Redis) && Redis.respond_to?(:silence_deprecations=)
# The same call works in Sidekiq 6.x and 7.x; one connection is all we use.
Sidekiq.configure_client { |c| c.redis = { url: url, size: 1 } }

# Sidekiq::Job exists from 6.3 on; Sidekiq::Worker before (and as an alias after).
class BenchJob
  include(defined?(Sidekiq::Job) ? Sidekiq::Job : Sidekiq::Worker)
  def perform(h); end
end

args = Array.new(n) { |i| [{ "repo" => "demo", "task" => "bench", "issue" => i }] }
Sidekiq.redis { |r| r.ping } # open the connection outside the timed part

t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
args.each_slice(BATCH) { |slice| Sidekiq::Client.push_bulk("class" => BenchJob, "args" => slice) }
secs = Process.clock_gettime(Process::CLOCK_MONOTONIC) - t0

puts JSON.generate(peer: "sidekiq", version: Sidekiq::VERSION, jobs: n,
                   seconds: secs.round(6), jobs_per_s: (n / secs).round(1))
