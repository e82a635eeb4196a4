//! The labels on every container agentq starts, which reaping and the orphan
//! sweep read back.

/// Label: the job id.
pub const LABEL_JOB: &str = "agentq.job";
/// Label: the job's attempt.
pub const LABEL_ATTEMPT: &str = "agentq.attempt";
/// Label: the worker id that started the container.
pub const LABEL_WORKER: &str = "agentq.worker";
/// Label: `agent` or `qa`.
pub const LABEL_STAGE: &str = "agentq.stage";
/// Label: the namespace, so reaping never touches another installation's containers.
pub const LABEL_NAMESPACE: &str = "agentq.namespace";
/// Label: the Redis of the namespace, without credentials ([`redis_label`]), so
/// that a worker of another namespace on the same engine can tell whether the
/// container's run is still held.
pub const LABEL_REDIS: &str = "agentq.redis";
/// Label: the container's time limit, seconds (for reaping by age when its
/// Redis is unknown).
pub const LABEL_TIMEOUT: &str = "agentq.timeout_secs";

/// A Redis URL as a label: user, password, query and fragment removed (no
/// secret ever goes on a container).
pub fn redis_label(url: &str) -> String {
    let url = url.split(['?', '#']).next().unwrap_or_default();
    match url.find("://") {
        Some(s) => {
            let rest = &url[s + 3..];
            let host_end = rest.find('/').unwrap_or(rest.len());
            let rest = match rest[..host_end].rfind('@') {
                Some(at) => &rest[at + 1..],
                None => rest,
            };
            format!("{}://{rest}", &url[..s])
        }
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_redis_label_carries_no_credentials() {
        assert_eq!(
            redis_label("rediss://user:s3cret@redis.example:6380/2?x=y"),
            "rediss://redis.example:6380/2"
        );
        assert_eq!(
            redis_label("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
        assert_eq!(
            redis_label("redis+sentinel://:pw@h1:26379,h2:26379/mymaster"),
            "redis+sentinel://h1:26379,h2:26379/mymaster"
        );
        assert_eq!(redis_label("garbage"), "");
    }
}
