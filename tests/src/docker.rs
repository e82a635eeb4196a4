//! The Docker engine: the test image, containers by label, agents' deaths.

use std::{
    collections::HashMap,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::*;

/// The image the tests run agents in (built by `scripts/build-test-images`).
pub const TEST_IMAGE: &str = "agentq-test-agent:latest";

/// Fails the test unless the Docker engine answers and the test image exists.
pub fn require_docker() {
    let out = Command::new("docker")
        .args(["image", "inspect", "-f", "{{.Id}}", TEST_IMAGE])
        .output();
    match out {
        Err(e) => panic!("cannot run the docker CLI ({e}): a Docker engine is required for this test"),
        Ok(o) if !o.status.success() => panic!(
            "test image {TEST_IMAGE} is missing or Docker is down ({}): run scripts/build-test-images",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Ok(_) => {}
    }
}

/// Fails the test loudly unless Docker runs and `image` is built (the test
/// images come from `scripts/build-test-images`).
pub fn require_image(image: &str) {
    require_docker();
    let ok = Command::new("docker")
        .args(["image", "inspect", image])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(ok, "{image} is missing: run scripts/build-test-images");
}

/// Fails the test loudly unless `image` is built and its test agent
/// (`/usr/local/bin/agentq-test-agent`) knows every one of `verbs` (its case
/// arms, `verb)`): an image built from an older tree lacks newer directives,
/// and its agent would silently do nothing.
pub fn require_directives(image: &str, verbs: &[&str]) {
    require_image(image);
    let script = Command::new("docker")
        .args(["run", "--rm", "--entrypoint", "cat", image])
        .arg("/usr/local/bin/agentq-test-agent")
        .output()
        .unwrap();
    let script = String::from_utf8_lossy(&script.stdout);
    for verb in verbs {
        assert!(
            script.contains(&format!("{verb})")),
            "{image} has no `{verb}` directive: run scripts/build-test-images"
        );
    }
}

impl TestEnv {
    /// Ids of the containers (running or not) of job `id` in this world.
    pub fn containers_of(&self, id: &str) -> Vec<String> {
        let out = Command::new("docker")
            .args(["ps", "-aq", "--filter"])
            .arg(format!("label=agentq.job={id}"))
            .arg("--filter")
            .arg(format!("label=agentq.namespace={}", self.ns))
            .output()
            .expect("docker ps");
        assert!(out.status.success(), "docker ps failed");
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_string)
            .collect()
    }
}

/// Containers (id) on the engine carrying label `key=value`, running or not.
pub fn containers_with_label(key: &str, value: &str) -> Vec<String> {
    docker_ps("-aq", key, value)
}

/// Running containers (id) on the engine carrying label `key=value`.
pub fn running_containers_with_label(key: &str, value: &str) -> Vec<String> {
    docker_ps("-q", key, value)
}

fn docker_ps(flags: &str, key: &str, value: &str) -> Vec<String> {
    let out = Command::new("docker")
        .args(["ps", flags, "--filter", &format!("label={key}={value}")])
        .output()
        .expect("docker ps");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// The engine's `die` events of one world's agent containers, recorded from
/// the moment it is made (`docker events --since`, so none is missed): when
/// each job's agent stopped, on the test agent's clock ([`uptime`]), even for an
/// agent killed before it could log its end. Stops watching on drop.
pub struct AgentDeaths {
    child: Child,
    out: PathBuf,
    /// Wall-clock seconds minus [`uptime`] when the watch began.
    offset: f64,
}

impl TestEnv {
    /// Starts recording the `die` events of this world's agent containers.
    pub fn watch_agent_deaths(&self) -> AgentDeaths {
        let wall = || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs_f64()
        };
        let offset = wall() - uptime();
        let out = self.dir.path().join(format!(
            "deaths-{}.log",
            ulid::Ulid::new().to_string().to_lowercase()
        ));
        let child = Command::new("docker")
            .args(["events", "--since", &format!("{:.0}", wall() - 1.0)])
            .args(["--filter", "event=die"])
            .args(["--filter", &format!("label=agentq.namespace={}", self.ns)])
            .args(["--filter", "label=agentq.stage=agent"])
            .args([
                "--format",
                "{{.TimeNano}} {{index .Actor.Attributes \"agentq.job\"}}",
            ])
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot run `docker events`");
        AgentDeaths { child, out, offset }
    }
}

impl AgentDeaths {
    /// Waits up to `timeout` until an agent of each job in `ids` has died;
    /// returns, per job, when its first agent died ([`uptime`] seconds).
    pub async fn wait_first(&self, ids: &[String], timeout: Duration) -> HashMap<String, f64> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut first: HashMap<String, f64> = HashMap::new();
            for line in std::fs::read_to_string(&self.out)
                .unwrap_or_default()
                .lines()
            {
                let Some((nanos, job)) = line.split_once(' ') else {
                    continue;
                };
                let Ok(nanos) = nanos.parse::<u128>() else {
                    continue;
                };
                let at = nanos as f64 / 1e9 - self.offset;
                let e = first.entry(job.to_string()).or_insert(at);
                *e = e.min(at);
            }
            if ids.iter().all(|id| first.contains_key(id)) {
                return first;
            }
            assert!(
                Instant::now() < deadline,
                "no agent of some of {ids:?} stopped within {timeout:?}: {first:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for AgentDeaths {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
