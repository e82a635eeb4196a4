//! A worker's preflight: a pool whose image is missing on its host is not run
//! there (its jobs stay queued, spending nothing, until a worker that has the
//! image takes them), a host that can run no pool exits with status 2, and the
//! engine, workspace root and git are checked with one clear line each.

use std::time::{Duration, Instant};

use agentq_shared::status::JobState;
use agentq_tests::*;

const LONG: Duration = Duration::from_secs(180);

/// Every worker's whole log.
fn whole_logs(env: &TestEnv) -> String {
    let mut all = String::new();
    for e in std::fs::read_dir(env.dir.path().join("logs")).unwrap() {
        all.push_str(&std::fs::read_to_string(e.unwrap().path()).unwrap_or_default());
    }
    all
}

/// Waits until a worker's log holds `needle`.
async fn wait_log(env: &TestEnv, needle: &str) {
    let deadline = Instant::now() + LONG;
    while !whole_logs(env).contains(needle) {
        assert!(
            Instant::now() < deadline,
            "no `{needle}` in the worker log:\n{}",
            env.worker_logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pool_whose_image_is_missing_waits_for_a_worker_that_has_it() {
    require_docker();
    let env = TestEnv::with_config("[agents.gemini]\nimage = \"agentq-no-such-image:latest\"\n");
    env.remotes.create("core", "demo", &[]);
    let _w1 = env.worker("w1", 2);
    wait_live_workers(&env, 1).await;
    wait_log(
        &env,
        "image agentq-no-such-image:latest of pool gemini is not on this host",
    )
    .await;
    let workers = env.cli_ok(&["workers", "--json"]);
    let w: serde_json::Value = serde_json::from_str(workers.lines().next().unwrap()).unwrap();
    let pools: Vec<&str> = w["pools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(pools, ["claude", "coderabbit", "codex", "local"], "{w}");
    let text = env.cli_ok(&["workers"]);
    assert!(text.contains("not gemini: image missing"), "{text}");

    let gemini = env.enqueue(&[
        "--repo", "demo", "--agent", "gemini", "--task", "g", "--issue", "1",
    ]);
    let codex = env.enqueue(&[
        "--repo", "demo", "--agent", "codex", "--task", "c", "--issue", "2",
    ]);
    // The worker ran the job enqueued after the gemini one; the gemini job did
    // not start, did not fail and spent nothing.
    assert_eq!(
        env.wait_final(&codex, LONG).await.state,
        JobState::Completed
    );
    let rec = env.store().await.get(&gemini).await.unwrap().unwrap();
    assert_eq!(
        (rec.state, rec.attempt, rec.runs),
        (JobState::Queued, 0, 0),
        "{rec:#?}"
    );
    assert!(env.agent_starts(&gemini).is_empty());

    // A worker with the image appears: it runs the job.
    let good_cfg = env.dir.path().join("good.toml");
    let cfg = std::fs::read_to_string(env.config_path())
        .unwrap()
        .replace("agentq-no-such-image:latest", TEST_IMAGE);
    std::fs::write(&good_cfg, cfg).unwrap();
    let _w2 = env.worker_with_args(
        "w2",
        &["--concurrency", "1", "--config", good_cfg.to_str().unwrap()],
    );
    let rec = env.wait_final(&gemini, LONG).await;
    assert_eq!(
        (rec.state, rec.attempt),
        (JobState::Completed, 1),
        "{rec:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_host_that_can_run_no_pool_exits_2_saying_why() {
    require_docker();
    let env = TestEnv::new();
    let cfg = env.dir.path().join("none.toml");
    let text = std::fs::read_to_string(env.config_path())
        .unwrap()
        .replace(TEST_IMAGE, "agentq-no-such-image:latest");
    std::fs::write(&cfg, text).unwrap();
    let mut w = env.worker_with_args("none", &["--config", cfg.to_str().unwrap()]);
    let status = w.wait_exit(LONG);
    assert_eq!(status.code(), Some(2), "{}", env.worker_logs());
    let log = env.worker_logs();
    assert!(log.contains("no agent pool can run on this host"), "{log}");
    for pool in ["codex", "claude", "gemini", "coderabbit", "local"] {
        assert!(
            log.contains(&format!("of pool {pool} is not on this host")),
            "{pool}: {log}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_image_removed_while_the_worker_runs_stops_its_pool_there_and_spends_nothing() {
    require_docker();
    let env = TestEnv::new();
    env.remotes.create("core", "demo", &[]);
    let tag = format!("agentq-test-agent:vanish-{}", env.ns.to_lowercase());
    let docker = |args: &[&str]| {
        let out = std::process::Command::new("docker")
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "docker {args:?}: {out:?}");
    };
    docker(&["tag", TEST_IMAGE, &tag]);
    let cfg = env.dir.path().join("vanish.toml");
    let text = std::fs::read_to_string(env.config_path())
        .unwrap()
        .replace(TEST_IMAGE, &tag);
    std::fs::write(&cfg, text).unwrap();
    let _w = env.worker_with_args("w1", &["--config", cfg.to_str().unwrap()]);
    wait_live_workers(&env, 1).await;
    docker(&["rmi", &tag]);
    let id = env.enqueue(&["--repo", "demo", "--task", "t", "--issue", "1"]);
    // Handed back, spending nothing, and this worker no longer runs codex.
    let rec = env
        .wait_for(&id, LONG, |r| {
            r.reason == Some(agentq_shared::status::WaitReason::Unserved)
        })
        .await;
    assert_eq!((rec.state, rec.tries), (JobState::Queued, 0), "{rec:#?}");
    assert!(rec.error.contains("No such image"), "{rec:#?}");
    wait_log(&env, "this worker takes no codex jobs any more").await;
    let deadline = Instant::now() + LONG;
    loop {
        let out = env.cli_ok(&["workers", "--json"]);
        let w: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
        if !w["pools"].as_array().unwrap().iter().any(|p| p == "codex") {
            break;
        }
        assert!(Instant::now() < deadline, "{w}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let rec = env.store().await.get(&id).await.unwrap().unwrap();
    assert_eq!((rec.state, rec.tries), (JobState::Queued, 0), "{rec:#?}");
    assert!(env.agent_starts(&id).is_empty(), "no agent ever started");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_container_config_docker_refuses_is_found_before_any_job_is_taken() {
    require_docker();
    let env = TestEnv::new();
    env.remotes.create("core", "demo", &[]);
    // A bind mount whose source does not exist on this host: Docker answers
    // 400 (invalid mount config) for every pool's container.
    let path = env.config_path().to_path_buf();
    let cfg = std::fs::read_to_string(&path).unwrap();
    let (before, after) = cfg.split_once("mounts = [{ source = \"").unwrap();
    let rest = &after[after.find('"').unwrap()..];
    std::fs::write(
        &path,
        format!("{before}mounts = [{{ source = \"/nonexistent/agentq-mount{rest}"),
    )
    .unwrap();
    let id = env.enqueue(&[
        "--repo",
        "demo",
        "--task",
        "@agentq-test commit",
        "--issue",
        "1",
    ]);
    let mut w = env.worker("w1", 1);
    let status = w.wait_exit(LONG);
    assert_eq!(status.code(), Some(2), "{}", env.worker_logs());
    let log = whole_logs(&env);
    for needle in [
        "bind source path does not exist: /nonexistent/agentq-mount",
        "this worker takes no codex jobs",
        "agentq.toml",
        "no agent pool can run on this host",
    ] {
        assert!(log.contains(needle), "{needle:?} not in the log:\n{log}");
    }
    let rec = env.store().await.get(&id).await.unwrap().unwrap();
    assert_eq!(
        (rec.state, rec.attempt, rec.runs),
        (JobState::Queued, 0, 0),
        "the job was not touched: {rec:#?}"
    );
    assert!(
        // This world's namespace only: other tests' workers make (and remove)
        // preflight containers of their own meanwhile.
        containers_with_label("agentq.namespace", &env.ns).is_empty(),
        "preflight left its container behind"
    );
}
