//! The switch in real containers: the agentq test image, a non-root user,
//! the watchdog and heartbeat from a tempdir on the host. Needs a Docker
//! engine and `scripts/build-test-images`; fails (never skips) without them.

use agentq_shared::{
    agent::AgentSpec,
    config::Config,
    container::{qa_container, ContainerJob, Watchdog},
};
use bollard::{
    query_parameters::{
        CreateContainerOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
        StopContainerOptionsBuilder, WaitContainerOptionsBuilder,
    },
    Docker,
};
use futures::StreamExt;

use super::*;

const IMAGE: &str = "agentq-test-agent:latest";

async fn engine() -> Docker {
    let docker = crate::docker::connect()
        .await
        .unwrap_or_else(|e| panic!("the dead-man tests need a Docker engine: {e}"));
    if let Err(e) = docker.inspect_image(IMAGE).await {
        panic!("{IMAGE} is missing ({e}); run scripts/build-test-images");
    }
    docker
}

/// One container run: its own root with the watchdog and heartbeat.
struct Run {
    beat: Option<Beat>,
    bin: PathBuf,
    root: tempfile::TempDir,
}

impl Run {
    fn new() -> Run {
        let root = tempfile::tempdir().unwrap();
        let bin = install(root.path()).unwrap();
        let beat = Beat::create(root.path(), "01TEST-1-qa").unwrap();
        for d in ["repo", "input"] {
            let p = root.path().join(d);
            fs::create_dir(&p).unwrap();
            fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
        }
        Run {
            beat: Some(beat),
            bin,
            root,
        }
    }

    fn beat_file(&self) -> PathBuf {
        self.beat.as_ref().unwrap().dir().join(BEAT_FILE)
    }

    /// Creates and starts the container; returns its id.
    async fn start(&self, docker: &Docker, stale_after: Duration, cmd: &[&str]) -> String {
        let mut cfg = Config::default();
        cfg.docker.image = IMAGE.into();
        cfg.docker.network = "none".into();
        let agent = AgentSpec::parse("codex").unwrap();
        let repo = self.root.path().join("repo");
        let input = self.root.path().join("input");
        let job = ContainerJob {
            job_id: "01TEST",
            attempt: 1,
            worker_id: "deadman-test",
            namespace: "agentq-deadman-test",
            agent: &agent,
            prompt: "",
            repo_dir: &repo,
            input_dir: &input,
            out_dir: None,
            user: "1000:1000".into(),
            watchdog: Some(Watchdog {
                bin_dir: &self.bin,
                beat_dir: self.beat.as_ref().unwrap().dir(),
                stale_after,
            }),
        };
        let mut body = qa_container(&cfg, &job, cmd.iter().map(|s| s.to_string()).collect());
        // The engine keeps the output, so the test can read what the
        // watchdog said.
        body.host_config.as_mut().unwrap().log_config = None;
        let name = format!(
            "agentq-deadman-test-{}-{}",
            std::process::id(),
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        );
        let opts = CreateContainerOptionsBuilder::new().name(&name).build();
        let id = docker.create_container(Some(opts), body).await.unwrap().id;
        if let Err(e) = docker
            .start_container(
                &id,
                None::<bollard::query_parameters::StartContainerOptions>,
            )
            .await
        {
            remove(docker, &id).await;
            panic!("cannot start the container: {e}");
        }
        id
    }
}

async fn remove(docker: &Docker, id: &str) {
    let opts = RemoveContainerOptionsBuilder::new().force(true).build();
    let _ = docker.remove_container(id, Some(opts)).await;
}

/// Waits up to `within` for the container to end; returns its exit code
/// and output, and removes it whatever happens.
async fn finish(docker: &Docker, id: &str, within: Duration) -> (i64, String) {
    let opts = WaitContainerOptionsBuilder::new()
        .condition("not-running")
        .build();
    let waited = tokio::time::timeout(within, docker.wait_container(id, Some(opts)).next()).await;
    let mut logs = String::new();
    let opts = LogsOptionsBuilder::new().stdout(true).stderr(true).build();
    let mut stream = docker.logs(id, Some(opts));
    while let Some(Ok(chunk)) = stream.next().await {
        logs.push_str(&chunk.to_string());
    }
    remove(docker, id).await;
    let code = match waited {
        Err(_) => panic!("the container still ran after {within:?}; output:\n{logs}"),
        Ok(Some(Ok(r))) => r.status_code,
        Ok(Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. }))) => code,
        Ok(other) => panic!("waiting for the container: {other:?}; output:\n{logs}"),
    };
    (code, logs)
}

#[tokio::test]
async fn a_container_whose_heartbeat_goes_stale_is_stopped() {
    let docker = engine().await;
    let run = Run::new();
    let started = Instant::now();
    let id = run
        .start(&docker, Duration::from_secs(2), &["sleep", "300"])
        .await;
    let (code, logs) = finish(&docker, &id, Duration::from_secs(30)).await;
    let took = started.elapsed();
    assert_eq!(code, 137, "{logs}");
    assert!(
        logs.contains("agentq-watchdog: the worker's heartbeat is ")
            && logs.contains(" ms old (limit 2000 ms); stopping the agent"),
        "stopped for the stale heartbeat, not another reason: {logs}"
    );
    assert!(took < Duration::from_secs(30), "took {took:?}");
}

#[tokio::test]
async fn a_fresh_heartbeat_lets_the_container_finish() {
    let docker = engine().await;
    let run = Run::new();
    let _keeper = Keeper::new(run.beat_file());
    let id = run
        .start(
            &docker,
            Duration::from_secs(2),
            &["sh", "-c", "sleep 4; id -u; exit 5"],
        )
        .await;
    let (code, logs) = finish(&docker, &id, Duration::from_secs(60)).await;
    assert_eq!(code, 5, "{logs}");
    assert_eq!(logs.trim(), "1000", "runs as the job's user, says nothing");
}

#[tokio::test]
async fn docker_stop_reaches_the_command_through_the_watchdog_as_pid_1() {
    let docker = engine().await;
    let run = Run::new();
    let _keeper = Keeper::new(run.beat_file());
    let id = run
        .start(&docker, Duration::from_secs(5), &["sleep", "300"])
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let stopping = Instant::now();
    let opts = StopContainerOptionsBuilder::new().t(20).build();
    let stopped = docker.stop_container(&id, Some(opts)).await;
    let took = stopping.elapsed();
    let (code, logs) = finish(&docker, &id, Duration::from_secs(30)).await;
    stopped.unwrap();
    assert_eq!(code, 128 + 15, "sleep ended by SIGTERM: {logs}");
    assert!(
        took < Duration::from_secs(10),
        "SIGTERM was passed on, not SIGKILL after the grace ({took:?})"
    );
}

/// The agent stops every process it may signal (`kill -STOP -1`: all
/// but itself and the namespace's init) and tries SIGSTOP and SIGKILL
/// on PID 1: the watchdog is PID 1, so none of it reaches it, and it
/// still stops the agent once the heartbeat goes stale.
#[tokio::test]
async fn an_agent_cannot_stop_its_watchdog() {
    let docker = engine().await;
    let run = Run::new();
    let id = run
        .start(
            &docker,
            Duration::from_secs(3),
            &[
                "sh",
                "-c",
                "kill -STOP -1; kill -STOP 1; kill -KILL 1; echo signalled; sleep 300",
            ],
        )
        .await;
    let (code, logs) = finish(&docker, &id, Duration::from_secs(60)).await;
    assert_eq!(code, 137, "{logs}");
    assert!(logs.contains("signalled"), "{logs}");
    assert!(
        logs.contains("the worker's heartbeat is "),
        "stopped by the watchdog: {logs}"
    );
}

#[tokio::test]
async fn dropping_the_beat_stops_its_container() {
    let docker = engine().await;
    let mut run = Run::new();
    let keeper = Keeper::new(run.beat_file());
    let id = run
        .start(&docker, Duration::from_secs(600), &["sleep", "300"])
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    drop(keeper);
    run.beat = None;
    let (code, logs) = finish(&docker, &id, Duration::from_secs(30)).await;
    assert_eq!(code, 137, "{logs}");
    assert!(
        logs.contains("heartbeat file is missing"),
        "the mount shows the removed directory as empty: {logs}"
    );
}
