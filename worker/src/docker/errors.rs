//! Why the engine could not create or start a container, sorted by what to do
//! about it.

/// Why the engine could not create or start a container, sorted by what to
/// do about it.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The image is not on this host (404 "No such image"): this worker stops
    /// serving the pool and the job goes to a worker that has the image,
    /// spending no attempt.
    #[error("the image is not on this host: {0}")]
    MissingImage(String),
    /// The engine refused the container's configuration (400: a bind mount
    /// whose source does not exist, a bad image reference, a limit out of
    /// range): it would on every try. Preflight finds these before any job
    /// is taken (the pool is not served); at run time the host changed since,
    /// and it is handled as the host's trouble, like [`EngineError::Transient`].
    #[error("Docker refuses the container's configuration: {0}. Fix this worker's agentq.toml ([docker] or [agents.POOL]: image, mounts, memory_mb, cpus, pids_limit) or the host, then restart the worker")]
    BadConfig(String),
    /// Anything else (engine unreachable, a 5xx, a timeout): the host's
    /// passing trouble. The job is handed back, spending no attempt, and the
    /// failure counts toward the host circuit breaker.
    #[error("this host cannot start a container: {0}")]
    Transient(String),
}

impl From<bollard::errors::Error> for EngineError {
    fn from(e: bollard::errors::Error) -> Self {
        use bollard::errors::Error as E;
        match e {
            E::DockerResponseServerError {
                status_code: 404,
                message,
            } if message.contains("No such image") => EngineError::MissingImage(message),
            E::DockerResponseServerError {
                status_code: 400,
                message,
            } => EngineError::BadConfig(message),
            e => EngineError::Transient(e.to_string()),
        }
    }
}

/// A bollard error as the engine error it is.
pub(super) fn host_err(e: bollard::errors::Error) -> anyhow::Error {
    EngineError::from(e).into()
}

/// The engine error in `e`, if it is one.
pub fn engine_error(e: &anyhow::Error) -> Option<&EngineError> {
    e.downcast_ref::<EngineError>()
}

#[cfg(test)]
mod tests {
    use bollard::errors::Error;

    use super::EngineError;

    fn server(status_code: u16, message: &str) -> EngineError {
        Error::DockerResponseServerError {
            status_code,
            message: message.into(),
        }
        .into()
    }

    #[test]
    fn a_missing_image_is_the_hosts_not_the_jobs() {
        assert!(matches!(
            server(404, "No such image: core-dev:latest"),
            EngineError::MissingImage(_)
        ));
    }

    #[test]
    fn a_refused_configuration_says_what_to_fix() {
        let e = server(
            400,
            "invalid mount config for type \"bind\": bind source path does not exist: /x",
        );
        assert!(matches!(e, EngineError::BadConfig(_)));
        let text = e.to_string();
        assert!(
            text.contains("agentq.toml") && text.contains("mounts"),
            "{text}"
        );
    }

    #[test]
    fn engine_trouble_is_transient() {
        for e in [
            server(500, "driver failed programming external connectivity"),
            server(404, "No such container: abc"),
            Error::RequestTimeoutError.into(),
        ] {
            assert!(matches!(e, EngineError::Transient(_)), "{e}");
        }
    }
}
