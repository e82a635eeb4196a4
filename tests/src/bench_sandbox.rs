//! Issue 34's rows (`AGENTQ_BENCH_ONLY=sandbox`): a committing job beside a
//! like-for-like `docker run`, and QA of an unchanged Go repository beside the
//! same commands on the host with a warm Go cache.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use agentq_shared::status::{JobState, QaStatus};
use agentq_tests::*;

use super::{run_secs, Row};

/// p50 and p95 of `v` (nearest rank).
fn p50_p95(v: &mut [f64]) -> (f64, f64) {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let rank = |p: f64| v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
    (rank(0.5), rank(0.95))
}

/// The config both rows run with: the container as big as the machine (the
/// host's commands get both cores too).
fn env_with(extra: &str) -> TestEnv {
    let env = TestEnv::with_config(extra);
    let p = env.config_path().to_path_buf();
    let text = std::fs::read_to_string(&p)
        .unwrap()
        .replace("memory_mb = 256", "memory_mb = 2048")
        .replace("cpus = 0.5", "cpus = 2.0");
    std::fs::write(&p, text).unwrap();
    env
}

/// The config the env's workers load.
fn worker_config(env: &TestEnv) -> agentq_shared::config::Config {
    <agentq_shared::config::Config as agentq_shared::config::ConfigFile>::load(Some(
        env.config_path().to_path_buf(),
    ))
    .unwrap()
}

/// A trivial job that commits one file, p50/p95 of 20 (prep start → final
/// state: the agent's container, the export made in it, the branch pushed),
/// beside `docker run --rm --init` on the agents' network of the same image,
/// agent command and prompt in a mounted clone (the agent makes the same
/// commit), and of the same command with the prompt `trivial` (no workspace,
/// nothing committed: the baseline of sessions 4-6), p50/p95 of 20 each.
pub async fn committing_job() -> Vec<Row> {
    let env = env_with("");
    // `AGENTQ_BENCH_RUST_LOG=info,agentq_worker=trace` for the container
    // and removal times too.
    let log = std::env::var("AGENTQ_BENCH_RUST_LOG");
    env.set_env(
        "RUST_LOG",
        log.as_deref().unwrap_or("info,agentq_worker=debug"),
    );
    let bare_repo = env.remotes.create("core", "demo", &[]);
    let w = env.worker("bench", 1);
    let warm = env.enqueue(&[
        "--repo",
        "demo",
        "--task",
        "warm @agentq-test commit",
        "--issue",
        "99999",
    ]);
    env.wait_final(&warm, Duration::from_secs(120)).await;
    let mut took = Vec::new();
    for i in 1..=20 {
        let id = env.enqueue(&[
            "--repo",
            "demo",
            "--task",
            "trivial @agentq-test commit",
            "--issue",
            &i.to_string(),
        ]);
        let rec = env.wait_final(&id, Duration::from_secs(300)).await;
        assert_eq!(rec.state, JobState::Completed, "{rec:?}");
        assert!(!rec.branch.is_empty());
        took.push(run_secs(&rec));
    }
    // Where the last job's time went (stderr): the worker's stage times.
    let log = plain(&std::fs::read_to_string(&w.log).unwrap_or_default());
    let stages: Vec<&str> = log.lines().filter(|l| l.contains("stage done")).collect();
    eprintln!(
        "committing job, last stages:\n{}",
        stages[stages.len().saturating_sub(6)..].join("\n")
    );
    if std::env::var_os("AGENTQ_BENCH_KEEP_LOG").is_some() {
        let _ = std::fs::write("/tmp/agentq-bench-commit.log", &log);
    }
    drop(w);
    let (uid, gid) = agentq_shared::config::AgentRunIds::agent_run_ids(&worker_config(&env));
    // Like for like: `docker run` of the same agent command with the same
    // prompt, as the agent's user, in a clone of the repository mounted at
    // /workspace (made before the clock starts), so the agent makes the same
    // commit; what is left over it is agentq's own work (the workspace,
    // the sandbox's export and import, the push, the record).
    let mut same_work = Vec::new();
    for i in 0..20 {
        let scratch = tempfile::tempdir().unwrap();
        let clone = scratch.path().join("demo");
        let ok = Command::new("git")
            .args(["clone", "-q", bare_repo.to_str().unwrap()])
            .arg(&clone)
            .status()
            .unwrap()
            .success();
        assert!(ok, "git clone failed");
        let ok = Command::new("chown")
            .args(["-R", &format!("{uid}:{gid}")])
            .arg(scratch.path())
            .status()
            .unwrap()
            .success();
        assert!(ok, "chown failed");
        let t = Instant::now();
        let out = Command::new("docker")
            .args(["run", "--rm", "--init", "--network", "agentq-agents"])
            .args(["--user", &format!("{uid}:{gid}"), "-w", "/workspace"])
            .arg("-v")
            .arg(format!("{}:/workspace", clone.display()))
            .args(["-e", "HOME=/tmp", "-e", "GIT_AUTHOR_NAME=bench"])
            .args(["-e", "GIT_AUTHOR_EMAIL=bench@example.invalid"])
            .args(["-e", "GIT_COMMITTER_NAME=bench"])
            .args(["-e", "GIT_COMMITTER_EMAIL=bench@example.invalid"])
            .arg(TEST_IMAGE)
            .args(["codex", "exec", &format!("trivial {i} @agentq-test commit")])
            .output()
            .unwrap();
        same_work.push(t.elapsed().as_secs_f64());
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && said.contains("committed"),
            "docker run of the committing agent failed: {said}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    drop(env);
    let mut docker = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let ok = Command::new("docker")
            .args([
                "run",
                "--rm",
                "--init",
                "--network",
                "agentq-agents",
                TEST_IMAGE,
            ])
            .args(["codex", "exec", "trivial"])
            .output()
            .unwrap()
            .status
            .success();
        assert!(ok, "docker run failed");
        docker.push(t.elapsed().as_secs_f64());
    }
    let ((a50, a95), (d50, d95)) = (p50_p95(&mut took), p50_p95(&mut docker));
    let (s50, s95) = p50_p95(&mut same_work);
    vec![
        Row {
            what: "a trivial job that commits one file, prep start → final state, p50 / p95 of 20, \
                   beside `docker run` of the same agent command making the same commit"
                .into(),
            agentq: format!("{a50:.3} s / {a95:.3} s"),
            peer: format!(
                "`docker run --rm --init --network agentq-agents --user {uid}:{gid} -v CLONE:/workspace` \
                 of the same image, agent command and prompt (the agent commits): {s50:.3} s / {s95:.3} s"
            ),
            ratio: format!(
                "{:.2}× ({:+.0} ms) / {:+.0} ms at p95",
                a50 / s50,
                (a50 - s50) * 1000.0,
                (a95 - s95) * 1000.0
            ),
        },
        Row {
        what: "a trivial job that commits one file, prep start → final state, p50 / p95 of 20 \
               (1 worker, warm mirror; one container: the export made in it by its watchdog; \
               the branch pushed)"
            .into(),
        agentq: format!("{a50:.3} s / {a95:.3} s"),
        peer: format!(
            "`docker run --rm --init --network agentq-agents` of the same image and agent command, prompt `trivial` (no workspace, no commit: sessions 4-6's baseline): {d50:.3} s / {d95:.3} s"
        ),
        ratio: format!(
            "{:.2}× ({:+.0} ms) / {:+.0} ms at p95",
            a50 / d50,
            (a50 - d50) * 1000.0,
            (a95 - d95) * 1000.0
        ),
    },
    ]
}

const GO_MOD: &str = "module example.com/demo\n\ngo 1.19\n";
const GO_LIB: &str = "package demo\n\nimport \"strings\"\n\nfunc Shout(s string) string { return strings.ToUpper(s) + \"!\" }\n";
const GO_TEST: &str = "package demo\n\nimport \"testing\"\n\nfunc TestShout(t *testing.T) {\n\tif Shout(\"a\") != \"A!\" {\n\t\tt.Fatal(\"bad\")\n\t}\n}\n";
/// QA's commands for Go (agentq's defaults), run on the host as the baseline.
const GO_QA: [&[&str]; 3] = [
    &["go", "build", "./..."],
    &["go", "vet", "./..."],
    &["go", "test", "./...", "-count=1", "-timeout", "120s"],
];

/// The QA stage's time of each job, from the worker's `stage done` lines.
/// `log` without the terminal colours it may have.
fn plain(log: &str) -> String {
    let mut plain = String::with_capacity(log.len());
    let mut chars = log.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain
}

fn qa_stage_ms(log: &str) -> Vec<f64> {
    plain(log)
        .lines()
        .filter(|l| {
            l.contains("stage done") && l.contains("stage=\"qa\"")
                || l.contains("stage done") && l.contains("stage=qa")
        })
        .filter_map(|l| {
            let at = l.find("ms=")? + 3;
            let n: String = l[at..].chars().take_while(char::is_ascii_digit).collect();
            n.parse::<f64>().ok()
        })
        .collect()
}

/// QA of an unchanged Go repository (checkout, the one QA container, `go
/// build`, `go vet`, `go test` with the host's caches warm), p50 of 10 after
/// one cold run, beside the same three commands on the host in a clone of
/// the repository with the host's Go cache warm, p50 of 10.
pub async fn qa_go() -> Vec<Row> {
    let env = env_with("[agents.codex]\nimage = \"agentq-test-go:latest\"\n");
    env.set_env("RUST_LOG", "info,agentq_worker=debug");
    let bare = env.remotes.create(
        "core",
        "demo",
        &[
            ("go.mod", GO_MOD),
            ("demo.go", GO_LIB),
            ("demo_test.go", GO_TEST),
        ],
    );
    let w = env.worker("bench", 1);
    for i in 0..=10 {
        let id = env.enqueue(&[
            "--repo",
            "demo",
            "--task",
            "look",
            "--issue",
            &(500 + i).to_string(),
        ]);
        let rec = env.wait_final(&id, Duration::from_secs(600)).await;
        assert_eq!(rec.qa_status, Some(QaStatus::Passed), "{rec:?}");
    }
    let log = std::fs::read_to_string(&w.log).unwrap_or_default();
    if std::env::var_os("AGENTQ_BENCH_KEEP_LOG").is_some() {
        let _ = std::fs::write("/tmp/agentq-bench-qa.log", plain(&log));
    }
    drop(w);
    let mut qa = qa_stage_ms(&log);
    let stages: Vec<String> = plain(&log)
        .lines()
        .filter(|l| {
            l.contains("stage done")
                || l.contains("QA checkout made")
                || l.contains("QA container done")
        })
        .map(str::to_string)
        .collect();
    eprintln!(
        "QA job, last stages:\n{}",
        stages[stages.len().saturating_sub(8)..].join("\n")
    );
    assert!(
        qa.len() >= 11,
        "QA stage times not in the worker's log ({} found)",
        qa.len()
    );
    let mut qa: Vec<f64> = qa.split_off(1).into_iter().map(|m| m / 1000.0).collect();
    // The host: a clone, the same commands, its own Go cache warmed once.
    let clone = tempfile::tempdir().unwrap();
    let dir = clone.path().join("demo");
    let ok = Command::new("git")
        .arg("clone")
        .arg("-q")
        .arg(&bare)
        .arg(&dir)
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let host = || {
        let t = Instant::now();
        for cmd in GO_QA {
            let ok = Command::new(cmd[0])
                .args(&cmd[1..])
                .current_dir(&dir)
                .output()
                .unwrap()
                .status
                .success();
            assert!(ok, "{cmd:?} failed on the host");
        }
        t.elapsed().as_secs_f64()
    };
    host();
    let mut hosts: Vec<f64> = (0..10).map(|_| host()).collect();
    let ((q50, q95), (h50, h95)) = (p50_p95(&mut qa), p50_p95(&mut hosts));
    drop(env);
    vec![Row {
        what: "QA of an unchanged Go repository (go build, go vet, go test -count=1), p50 / p95 of 10 \
               after one cold run: the checkout and one QA container (started ahead, while the agent \
               runs), caches in named volumes"
            .into(),
        agentq: format!("{q50:.3} s / {q95:.3} s"),
        peer: format!("the same three commands on the host, warm Go cache: {h50:.3} s / {h95:.3} s"),
        ratio: format!("{:.2}× ({:+.0} ms)", q50 / h50, (q50 - h50) * 1000.0),
    }]
}

/// Jobs whose container start is timed on an idle worker.
const STARTS: usize = 50;

/// Docker's `create` and `start` events of containers, by name: (create,
/// start) on the engine's clock, in ms since the epoch (fractions kept).
type Events =
    std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, (Option<f64>, Option<f64>)>>>;

/// Watches the engine's container `create` and `start` events from now on,
/// until dropped.
fn watch_events(docker: &bollard::Docker) -> (Events, tokio::task::JoinHandle<()>) {
    use futures::StreamExt;
    let events: Events = Default::default();
    let filters = std::collections::HashMap::from([
        ("type", vec!["container"]),
        ("event", vec!["create", "start"]),
    ]);
    let opts = bollard::query_parameters::EventsOptionsBuilder::new()
        .filters(&filters)
        .build();
    let mut stream = docker.events(Some(opts));
    let seen = events.clone();
    let task = tokio::spawn(async move {
        while let Some(Ok(ev)) = stream.next().await {
            let name = ev
                .actor
                .and_then(|a| a.attributes)
                .and_then(|mut a| a.remove("name"));
            let (Some(name), Some(ns)) = (name, ev.time_nano) else {
                continue;
            };
            let ms = ns as f64 / 1e6;
            let mut seen = seen.lock().unwrap();
            let entry = seen.entry(name).or_default();
            match ev.action.as_deref() {
                Some("create") => entry.0 = Some(ms),
                Some("start") => entry.1 = Some(ms),
                _ => {}
            }
        }
    });
    (events, task)
}

/// The (create, start) event times of container `name`, waited for (5 s).
async fn event_times(events: &Events, name: &str) -> (f64, f64) {
    let t = Instant::now();
    loop {
        if let Some((Some(c), Some(s))) = events.lock().unwrap().get(name).copied() {
            return (c, s);
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "no create and start events of {name}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Milliseconds since the epoch, now.
fn epoch_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        * 1000.0
}

/// Enqueue → the agent container's start (Docker's `start` event) on an
/// idle worker, 50 jobs, beside Docker's own create → start of a bare
/// container of the same image (init, the agents' network) asked for by
/// this process, 50 times, measured the same way (from just before the
/// `create` call to the `start` event). The row is what the worker adds:
/// the first minus the second, p50 / p95; and, to tell where it goes,
/// enqueue → Docker's `create` event (the worker's own time before it asks
/// Docker, plus Docker's create) beside the bare container's.
pub async fn container_start() -> Vec<Row> {
    let docker = bollard::Docker::connect_with_local_defaults().unwrap();
    let (events, watch) = watch_events(&docker);
    let env = env_with("");
    if let Ok(log) = std::env::var("AGENTQ_BENCH_RUST_LOG") {
        env.set_env("RUST_LOG", log);
    }
    env.remotes.create("core", "demo", &[]);
    let w = env.worker("bench", 1);
    let warm = env.enqueue(&["--repo", "demo", "--task", "warm", "--issue", "99999"]);
    env.wait_final(&warm, Duration::from_secs(120)).await;
    let (mut to_start, mut to_create) = (Vec::new(), Vec::new());
    let starts = std::env::var("AGENTQ_BENCH_STARTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(STARTS);
    for i in 1..=starts {
        // Idle: the last job's removals and acknowledgement are done.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let id = env.enqueue(&[
            "--repo",
            "demo",
            "--task",
            "trivial",
            "--issue",
            &(700 + i).to_string(),
        ]);
        let rec = env.wait_final(&id, Duration::from_secs(120)).await;
        assert_eq!(rec.state, JobState::Completed, "{rec:?}");
        let enqueued = rec.created_at.ms() as f64;
        let name = format!("agentq-{}-1", id.to_lowercase());
        let (created, started) = event_times(&events, &name).await;
        to_start.push(started - enqueued);
        to_create.push(created - enqueued);
    }
    if std::env::var_os("AGENTQ_BENCH_KEEP_LOG").is_some() {
        let log = std::fs::read_to_string(&w.log).unwrap_or_default();
        let _ = std::fs::write("/tmp/agentq-bench-start.log", plain(&log));
    }
    drop(w);
    // Docker's own: a container of the same image, created and started by
    // this process, the same measure from just before `create`; twice: a
    // bare one (init, the agents' network), and one of the very body the
    // worker creates for the agent (`agent_container` with the test's
    // config: its mounts, tmpfs, limits, user, watchdog mounts), its
    // command `true`.
    let bare = || bollard::models::ContainerCreateBody {
        image: Some(TEST_IMAGE.to_string()),
        cmd: Some(vec!["true".to_string()]),
        host_config: Some(bollard::models::HostConfig {
            init: Some(true),
            network_mode: Some("agentq-agents".to_string()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let (own_start, own_create) = docker_own(&docker, &events, starts, "bare", bare).await;
    let scratch = tempfile::tempdir().unwrap();
    let same = {
        let cfg = worker_config(&env);
        let dir = |d: &str| {
            let p = scratch.path().join(d);
            std::fs::create_dir_all(&p).unwrap();
            p
        };
        let (repo, input, out, bin, beat) = (
            dir("repo"),
            dir("input"),
            dir("out"),
            dir("bin"),
            dir("beat"),
        );
        move || {
            let agent = cfg.agent_table().parse("codex").unwrap();
            let (uid, gid) = agentq_shared::config::AgentRunIds::agent_run_ids(&cfg);
            let job = agentq_shared::container::ContainerJob {
                job_id: "bench",
                attempt: 1,
                worker_id: "bench",
                namespace: &cfg.namespace,
                agent: &agent,
                prompt: "trivial",
                repo_dir: &repo,
                input_dir: &input,
                out_dir: Some(&out),
                user: format!("{uid}:{gid}"),
                watchdog: Some(agentq_shared::container::Watchdog {
                    bin_dir: &bin,
                    beat_dir: &beat,
                    stale_after: Duration::from_secs(60),
                }),
            };
            let mut body = agentq_shared::container::agent_container(&cfg, &job, |_| None);
            body.entrypoint = Some(vec!["true".to_string()]);
            body.cmd = None;
            body
        }
    };
    let (same_start, same_create) = docker_own(&docker, &events, starts, "same", same).await;
    // The body's mounts are under the test's directories.
    drop(env);
    watch.abort();
    let (mut own_start, mut own_create) = (own_start, own_create);
    let (mut same_start, mut same_create) = (same_start, same_create);
    let (s50, s95) = p50_p95(&mut to_start.clone());
    let ((d50, d95), (l50, l95)) = (p50_p95(&mut own_start), p50_p95(&mut same_start));
    let ((c50, c95), (o50, o95)) = (p50_p95(&mut to_create), p50_p95(&mut own_create));
    let (q50, q95) = p50_p95(&mut same_create);
    // What the worker adds, job by job against Docker's p50.
    let beyond = |base: f64| {
        let mut v: Vec<f64> = to_start.iter().map(|s| s - base).collect();
        p50_p95(&mut v)
    };
    let ((b50, b95), (bb50, bb95)) = (beyond(l50), beyond(d50));
    vec![
        Row {
            what: format!(
                "enqueue → the agent container's start (Docker's `start` event), idle worker, \
                 p50 / p95 of {starts}, beyond Docker's own create → start of the same container \
                 (each job minus its p50)"
            ),
            agentq: format!(
                "{b50:.0} ms / {b95:.0} ms beyond (enqueue → start {s50:.0} ms / {s95:.0} ms)"
            ),
            peer: format!(
                "the agent's container body as the worker builds it (`agent_container`: mounts, \
                 tmpfs, limits, user; command `true`) created and started by the bench: create \
                 call → `start` event {l50:.0} ms / {l95:.0} ms; goal ≤ 20 ms beyond at p50"
            ),
            ratio: format!("{:.2}× the goal (p50)", b50 / 20.0),
        },
        Row {
            what: format!(
                "the same, beyond a bare container's create → start, p50 / p95 of {starts}"
            ),
            agentq: format!("{bb50:.0} ms / {bb95:.0} ms beyond"),
            peer: format!(
                "a bare container of the same image (init, the agents' network): create call → \
                 `start` event {d50:.0} ms / {d95:.0} ms"
            ),
            ratio: format!("{:.2}× the goal (p50)", bb50 / 20.0),
        },
        Row {
            what: format!(
                "of which enqueue → Docker's `create` event (the worker before it asks Docker, \
                 plus Docker's create), p50 / p95 of {starts}"
            ),
            agentq: format!("{c50:.0} ms / {c95:.0} ms"),
            peer: format!(
                "create call → `create` event: the same body {q50:.0} ms / {q95:.0} ms, the bare \
                 container {o50:.0} ms / {o95:.0} ms"
            ),
            ratio: format!("{:+.0} ms (p50, the same body)", c50 - q50),
        },
    ]
}

/// Docker's own create → `start` event (and → `create` event) of `n`
/// containers of `body()`, asked for by this process, each removed after,
/// in ms from just before the `create` call.
async fn docker_own(
    docker: &bollard::Docker,
    events: &Events,
    n: usize,
    what: &str,
    body: impl Fn() -> bollard::models::ContainerCreateBody,
) -> (Vec<f64>, Vec<f64>) {
    let (mut to_start, mut to_create) = (Vec::new(), Vec::new());
    for i in 0..n {
        let name = format!("agentq-bench-{what}-{}-{i}", std::process::id());
        let opts = bollard::query_parameters::CreateContainerOptionsBuilder::new()
            .name(&name)
            .build();
        let asked = epoch_ms();
        let id = docker
            .create_container(Some(opts), body())
            .await
            .unwrap()
            .id;
        docker
            .start_container(
                &id,
                None::<bollard::query_parameters::StartContainerOptions>,
            )
            .await
            .unwrap();
        let (created, started) = event_times(events, &name).await;
        to_start.push(started - asked);
        to_create.push(created - asked);
        let rm = bollard::query_parameters::RemoveContainerOptionsBuilder::new()
            .force(true)
            .build();
        let _ = docker.remove_container(&id, Some(rm)).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (to_start, to_create)
}

/// The rows this task's work is measured by (`AGENTQ_BENCH_ONLY=sandbox-commit`):
/// the committing job and the container start, without QA's.
pub async fn commit_rows() -> Vec<Row> {
    let mut rows = committing_job().await;
    rows.extend(container_start().await);
    rows
}

/// Every row.
pub async fn rows() -> Vec<Row> {
    let mut rows = commit_rows().await;
    rows.extend(qa_go().await);
    rows
}
