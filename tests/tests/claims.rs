//! README claims that were asserted nowhere, or only through a log line
//! (issue 29), observed on the real thing: the agent's and QA's containers as
//! Docker reports them and as the kernel reports them from inside, the job's
//! record after a container the engine refused, and what a redirecting forge
//! origin receives from the worker's git. Each test names the hand-written
//! mutants of `tests/mutants.txt` it kills.

use std::{
    io::{Read, Write},
    net::TcpListener,
    process::Command,
    sync::{Arc, Mutex},
    time::Duration,
};

use agentq_shared::status::{JobState, WaitReason};
use agentq_tests::*;

const TOKEN: &str = "forge-token-claims-5d9e21";
const LONG: Duration = Duration::from_secs(240);

/// `docker inspect` (of a container or a network) as JSON.
fn inspect(kind: &str, name: &str) -> serde_json::Value {
    let out = Command::new("docker")
        .args([kind, "inspect", name])
        .output()
        .expect("docker inspect");
    assert!(
        out.status.success(),
        "docker {kind} inspect {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v[0].clone()
}

/// Removes this test's own agents network when the test ends, however.
struct OwnNetwork(String);

impl Drop for OwnNetwork {
    fn drop(&mut self) {
        // A test that failed mid-run leaves its agent attached: only this
        // test's containers are on this network.
        let filter = format!("network={}", self.0);
        if let Ok(out) = Command::new("docker")
            .args(["ps", "-aq", "--filter", &filter])
            .output()
        {
            for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("docker").args(["rm", "-f", id]).output();
            }
        }
        let _ = Command::new("docker")
            .args(["network", "rm", &self.0])
            .output();
    }
}

/// Adds keys to the `[docker]` table of `env`'s config.
fn docker_keys(env: &TestEnv, keys: &str) {
    let text = std::fs::read_to_string(env.config_path()).unwrap();
    assert!(text.contains("\n[docker]\n"), "{text}");
    std::fs::write(
        env.config_path(),
        text.replacen("\n[docker]\n", &format!("\n[docker]\n{keys}\n"), 1),
    )
    .unwrap();
}

/// The Security model's hardening, read from Docker (the agent's container,
/// while the agent holds) and from the kernel inside the QA container (its
/// own `/proc/self/status` and environment, written by a pool `qa` command):
/// no-new-privileges, every capability dropped, the memory/CPU/pids limits of
/// the config, the agents' bridge with inter-container traffic off, the prompt
/// and the agent config directories mounted read-only, and the forge token in
/// neither environment although the worker has it.
/// Kills: `security_opt`, `cap_drop`, `memory`, `nano_cpus`, `pids_limit`
/// (shared/src/container.rs), `enable_icc` (worker/src/docker.rs), the
/// read-only binds of `/agentq` and the config directories.
#[tokio::test(flavor = "multi_thread")]
async fn agent_and_qa_containers_are_hardened_as_the_security_model_says() {
    require_docker();
    let qa = "env > /agentq-test/qa-env.txt; \
              grep -E '^(NoNewPrivs|CapEff)' /proc/self/status >> /agentq-test/qa-env.txt";
    let env = TestEnv::with_config(&format!(
        "[forge]\ntoken_env = \"AGENTQ_TEST_FORGE_TOKEN\"\nmax_retries = 1\nretry_base_ms = 50\n\
         [agents.codex]\nimage = \"{TEST_IMAGE}\"\nqa = [[\"sh\", \"-c\", \"{qa}\"]]\n"
    ));
    let network = OwnNetwork(format!("agentq-claims-{}", env.ns));
    let home = env.dir.path().join("agent-home");
    std::fs::create_dir_all(home.join(".codex")).unwrap();
    docker_keys(
        &env,
        &format!(
            "network = \"{}\"\nagent_home = \"{}\"",
            network.0,
            home.display()
        ),
    );
    let sim = env.start_forge(TOKEN).await;
    env.remotes
        .create("core", "demo", &[("README.md", "# demo\n")]);
    sim.add_repo("core", "demo", "main");
    let _w = env.worker("w1", 1);
    let id = env.enqueue(&[
        "--repo",
        "demo",
        "--branch",
        "main",
        "--task",
        "@agentq-test hold @agentq-test commit",
    ]);
    env.wait_holding(1).await;
    let agent = running_containers_with_label("agentq.job", &id);
    assert_eq!(agent.len(), 1, "one live container of the job: {agent:?}");
    let c = inspect("container", &agent[0]);
    let hc = &c["HostConfig"];
    assert_eq!(
        hc["SecurityOpt"],
        serde_json::json!(["no-new-privileges"]),
        "{hc}"
    );
    assert_eq!(hc["CapDrop"], serde_json::json!(["ALL"]), "{hc}");
    assert_eq!(hc["Privileged"], false, "{hc}");
    assert_eq!(hc["Memory"], 256 * 1024 * 1024, "memory_mb = 256: {hc}");
    assert_eq!(hc["NanoCpus"], 500_000_000, "cpus = 0.5: {hc}");
    assert_eq!(hc["PidsLimit"], 256, "pids_limit = 256: {hc}");
    let mode = hc["NetworkMode"].as_str().unwrap();
    let net = inspect("network", mode);
    assert_eq!(net["Name"], network.0.as_str(), "{net}");
    assert_eq!(
        net["Options"]["com.docker.network.bridge.enable_icc"], "false",
        "inter-container traffic off: {net}"
    );
    let mounts = c["Mounts"].as_array().unwrap();
    let rw = |dest: &str| -> bool {
        mounts
            .iter()
            .find(|m| m["Destination"] == dest)
            .unwrap_or_else(|| panic!("no mount at {dest}: {mounts:?}"))["RW"]
            .as_bool()
            .unwrap()
    };
    assert!(rw("/workspace"), "the working tree is the agent's");
    assert!(!rw("/agentq"), "prompt and answer read-only: {mounts:?}");
    assert!(
        !rw("/agentq-home/.codex"),
        "agent config read-only: {mounts:?}"
    );
    let agent_env = c["Config"]["Env"].to_string();
    assert!(!agent_env.contains(TOKEN), "the forge token: {agent_env}");
    assert!(
        env.env().get("AGENTQ_TEST_FORGE_TOKEN") == Some(&TOKEN.to_string()),
        "the worker has the token, so its absence means something"
    );

    env.release_holds();
    let rec = env.wait_final(&id, LONG).await;
    assert_eq!(rec.state, JobState::Completed, "{rec:#?}");
    let qa_env = std::fs::read_to_string(env.dir.path().join("runs/qa-env.txt"))
        .expect("the QA command ran and wrote its environment");
    assert!(qa_env.contains("AGENTQ_JOB_ID="), "{qa_env}");
    assert!(!qa_env.contains(TOKEN), "the forge token in QA: {qa_env}");
    assert!(qa_env.contains("NoNewPrivs:\t1"), "{qa_env}");
    assert!(
        qa_env.contains("CapEff:\t0000000000000000"),
        "QA keeps no capability: {qa_env}"
    );
    assert!(
        sim.pushes().iter().any(|p| p.success && p.repo == "demo"),
        "the token did its job on the forge: {:?}",
        sim.pushes()
    );
}

/// "A container that cannot be created or started never spends a job's
/// attempt", read from the record: the only worker's engine refuses the
/// container (a mounted directory vanished after preflight), so the job goes
/// back `waiting` (`host_error`) with `tries` given back; a good worker then
/// completes it on its first counted try.
/// Kills: `if docker::engine_error(&e).is_some()` (worker/src/job.rs).
#[tokio::test(flavor = "multi_thread")]
async fn a_container_the_engine_refuses_spends_no_attempt() {
    require_docker();
    let env = TestEnv::new();
    env.remotes.create("core", "demo", &[]);
    let (gone, bad_cfg) = config_with_a_mount_that_vanishes(&env);
    let mut bad = env.worker_with_args(
        "bad",
        &["--concurrency", "1", "--config", bad_cfg.to_str().unwrap()],
    );
    wait_live_workers(&env, 1).await;
    std::fs::remove_dir(&gone).unwrap();
    let id = env.enqueue(&[
        "--repo",
        "demo",
        "--issue",
        "1",
        "--task",
        "@agentq-test commit",
    ]);
    // Every delivery is handed back (`host_error`, its try given back) and
    // taken again at once, until the host's breaker degrades it: then the job
    // waits (`host_degraded`) for a host that can run it. (Were the tries
    // spent, it would fail after `max_attempts`.) Read from the record and its
    // history, not caught in passing: the hand-backs follow each other as fast
    // as Redis answers.
    let rec = env
        .wait_for(&id, LONG, |r| {
            r.state.is_final()
                || (r.state == JobState::Waiting && r.reason == Some(WaitReason::HostDegraded))
        })
        .await;
    assert_eq!(
        (rec.state, rec.reason, rec.tries),
        (JobState::Waiting, Some(WaitReason::HostDegraded), 0),
        "handed back, no try spent: {rec:#?}\n{}",
        env.worker_logs()
    );
    assert!(rec.error.contains("gone-after-start"), "{}", rec.error);
    let history = env.store().await.history(&id).await.unwrap();
    assert!(
        history
            .iter()
            .any(|h| h.state == "waiting" && h.reason == "host_error"),
        "no host_error hand-back in {history:#?}"
    );
    assert!(env.agent_starts(&id).is_empty(), "no agent ever ran");
    bad.kill9();
    let _good = env.worker("good", 1);
    let rec = env.wait_final(&id, LONG).await;
    assert_eq!(
        (rec.state, rec.tries),
        (JobState::Completed, 1),
        "completed on its first counted try: {rec:#?}"
    );
    assert!(
        rec.attempt >= 2,
        "the refused delivery is in `attempt`: {rec:#?}"
    );
}

/// What one loopback HTTP server received: the request heads.
type Seen = Arc<Mutex<Vec<String>>>;

/// A loopback HTTP server answering every request with `reply` (a status
/// line and headers, no body), keeping each request's head.
fn http_server(reply: impl Fn(&str) -> String + Send + 'static) -> (u16, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen: Seen = Arc::default();
    let keep = seen.clone();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let mut head = Vec::new();
            let mut buf = [0u8; 4096];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let head = String::from_utf8_lossy(&head).into_owned();
            let answer = reply(&head);
            keep.lock().unwrap().push(head);
            let _ = stream.write_all(
                format!("{answer}Content-Length: 0\r\nConnection: close\r\n\r\n").as_bytes(),
            );
        }
    });
    (port, seen)
}

/// A world with the forge at `forge` and the jobs' git remotes at
/// `git_base`, the forge token set: one job on `core/demo`, run to its end.
async fn one_job_fetching_from(forge: &str, git_base: &str) -> agentq_shared::record::JobRecord {
    let env = TestEnv::with_config(
        "[forge]\ntoken_env = \"AGENTQ_TEST_FORGE_TOKEN\"\nmax_retries = 0\nretry_base_ms = 50\ntimeout_secs = 5",
    );
    env.set_env("AGENTQ_FORGE_URL", forge);
    env.set_env("AGENTQ_GIT_BASE", git_base);
    env.set_env("AGENTQ_TEST_FORGE_TOKEN", TOKEN);
    let _w = env.worker("w1", 1);
    let id = env.enqueue(&["--repo", "demo", "--branch", "main", "--task", "fetch"]);
    env.wait_final(&id, LONG).await
}

/// The request heads of `seen` that git sent, and of those, the ones that
/// carried credentials (git without any sends empty ones, `Basic Og==`,
/// base64 of `:`).
fn git_requests(seen: &Seen) -> (Vec<String>, Vec<String>) {
    let heads: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|h| h.to_ascii_lowercase().contains("user-agent: git/"))
        .cloned()
        .collect();
    let with_credentials = heads.iter().filter(|h| credentials(h)).cloned().collect();
    (heads, with_credentials)
}

/// Whether a request head carries credentials that are not empty.
fn credentials(head: &str) -> bool {
    head.lines().any(|l| {
        l.to_ascii_lowercase().starts_with("authorization:")
            && l.split_once(':')
                .is_some_and(|(_, v)| v.trim() != "Basic Og==")
    })
}

/// Asks for credentials (HTTP Basic) on every request.
fn asks_credentials(_: &str) -> String {
    "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"elsewhere\"\r\n".into()
}

/// "git does not follow redirects, so the token goes only to the forge's
/// origin": the forge's origin answers git with a redirect to another loopback
/// origin, which asks for credentials. The worker's git asks the forge's
/// origin and never the other one; the job fails (prep cannot fetch).
/// Kills: `http.followRedirects=false` (worker/src/git.rs).
#[tokio::test(flavor = "multi_thread")]
async fn git_does_not_follow_a_redirect_away_from_the_forge() {
    let (other, other_seen) = http_server(asks_credentials);
    let (forge, forge_seen) = http_server(move |head| {
        let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
        format!("HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:{other}{path}\r\n")
    });
    let forge = format!("http://127.0.0.1:{forge}");
    let rec = one_job_fetching_from(&forge, &forge).await;
    assert_eq!(rec.state, JobState::Failed, "{rec:#?}");
    let (asked, _) = git_requests(&forge_seen);
    assert!(
        asked.iter().any(|h| h.contains("/core/demo.git/info/refs")),
        "the worker's git asked the forge's origin: {asked:#?}\n{rec:#?}"
    );
    let (followed, _) = git_requests(&other_seen);
    assert!(
        followed.is_empty(),
        "git followed the redirect: {followed:#?}"
    );
    let leaked: Vec<String> = other_seen
        .lock()
        .unwrap()
        .iter()
        .filter(|h| credentials(h))
        .cloned()
        .collect();
    assert!(leaked.is_empty(), "credentials went elsewhere: {leaked:#?}");
}

/// The token is offered only to the forge's origin: with the git remotes on
/// another loopback origin that asks for credentials, git asks it and sends
/// none (same host, another port is another origin).
/// Kills: `origin(&forge) != origin(&remote)` (worker/src/git.rs).
#[tokio::test(flavor = "multi_thread")]
async fn the_token_is_offered_only_to_the_forges_origin() {
    let (remotes, remotes_seen) = http_server(asks_credentials);
    let (forge, _) = http_server(|_| "HTTP/1.1 404 Not Found\r\n".into());
    let rec = one_job_fetching_from(
        &format!("http://127.0.0.1:{forge}"),
        &format!("http://127.0.0.1:{remotes}"),
    )
    .await;
    assert_eq!(rec.state, JobState::Failed, "{rec:#?}");
    let (asked, leaked) = git_requests(&remotes_seen);
    assert!(!asked.is_empty(), "git asked the remotes' origin: {rec:#?}");
    assert!(
        leaked.is_empty(),
        "the token went to another origin: {leaked:#?}"
    );
}
