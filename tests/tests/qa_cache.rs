//! Issue 34: QA at cache speed. One container per QA run (each command still
//! logged and judged on its own), with the host's build caches as named
//! volumes: the second QA run of an unchanged Go repository finds Go's cache
//! warm (`go test` says `(cached)`), and the QA container is as hardened as
//! before.

use std::{path::Path, time::Duration};

use agentq_shared::status::{JobState, QaStatus};
use agentq_tests::*;

const LONG: Duration = Duration::from_secs(240);

const GO_MOD: &str = "module example.com/demo\n\ngo 1.19\n";
const GO_LIB: &str = "package demo\n\nfunc Add(a, b int) int { return a + b }\n";
const GO_TEST: &str = "package demo\n\nimport \"testing\"\n\nfunc TestAdd(t *testing.T) {\n\tif Add(2, 2) != 4 {\n\t\tt.Fatal(\"bad\")\n\t}\n}\n";

/// What the QA container is: its user, capabilities, privileges, and
/// whether it can write outside its mounts or reach the API keys.
const SANDBOX_CHECK: &str = "echo uid=$(id -u); grep CapEff /proc/self/status; grep NoNewPrivs /proc/self/status; echo key=${OPENAI_API_KEY:-none}; echo cache=$GOCACHE; echo root=$(stat -c %a /); if grep -q ' /usr [^ ]* ro[, ]' /proc/self/mounts; then echo usr=read-only-mount; else echo usr=image; fi";

fn world() -> TestEnv {
    require_image("agentq-test-go:latest");
    let env = TestEnv::with_config("qa_cache_gb = 2\n");
    env.append_config(&format!(
        "[agents.codex]\nimage = \"agentq-test-go:latest\"\nqa = [[\"go\", \"build\", \"./...\"], [\"go\", \"vet\", \"./...\"], [\"go\", \"test\", \"./...\"], [\"sh\", \"-c\", \"{SANDBOX_CHECK}\"]]\n"
    ));
    let cfg_path = env.config_path().to_path_buf();
    let cfg = std::fs::read_to_string(&cfg_path)
        .unwrap()
        .replace("memory_mb = 256", "memory_mb = 1024");
    std::fs::write(&cfg_path, cfg).unwrap();
    env.set_env("OPENAI_API_KEY", "sk-secret-34");
    env.remotes.create(
        "core",
        "demo",
        &[
            ("go.mod", GO_MOD),
            ("demo.go", GO_LIB),
            ("demo_test.go", GO_TEST),
        ],
    );
    env
}

fn meta(rec: &agentq_shared::record::JobRecord, name: &str) -> String {
    std::fs::read_to_string(Path::new(&rec.workspace_dir).join(".meta").join(name))
        .unwrap_or_default()
}

fn files_under(dir: &Path) -> usize {
    let mut n = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(e.path());
            } else {
                n += 1;
            }
        }
    }
    n
}

#[tokio::test(flavor = "multi_thread")]
async fn the_second_qa_run_of_a_go_repository_finds_the_cache_warm() {
    let env = world();
    let _w = env.worker("w1", 1);
    let (mut recs, mut go_tests) = (Vec::new(), Vec::new());
    let fuse = docker_storage_driver() == "fuse-overlayfs";
    // Two issues: two workspaces, two QA runs of the same commit.
    for issue in ["1", "2"] {
        if issue == "2" && fuse {
            // The worker copies the image's /usr into a volume in the
            // background; the second run finds it made.
            wait_usr_copy("agentq-test-go:latest");
        }
        let id = env.enqueue(&[
            "--repo",
            "demo",
            "--issue",
            issue,
            "--task",
            "Look @agentq-test print looking",
        ]);
        let rec = env.wait_final(&id, LONG).await;
        assert_eq!(
            (rec.state, rec.qa_status),
            (JobState::Completed, Some(QaStatus::Passed)),
            "{rec:#?}\n{}\n{}",
            meta(&rec, "qa.log"),
            env.worker_logs()
        );
        // Each command is logged on its own, in order.
        let log = meta(&rec, "qa.log");
        let at = |s: &str| log.find(s).unwrap_or_else(|| panic!("{s} not in {log}"));
        assert!(
            at("$ go build ./...") < at("$ go vet ./...") && at("$ go vet") < at("$ go test ./...")
        );
        assert!(meta(&rec, "qa-4.log").contains("uid="), "{log}");
        go_tests.push(meta(&rec, "qa-3.log"));
        recs.push(rec);
    }
    let go_cache = env.workspace_root().join(".agentq-cache/go/build");
    assert!(
        files_under(&go_cache) > 0,
        "nothing in {}",
        go_cache.display()
    );
    // The first run filled the cache, the second found it warm.
    let (first, second) = (&go_tests[0], &go_tests[1]);
    assert!(!first.contains("(cached)"), "cold run cached: {first}");
    assert!(
        second.contains("(cached)"),
        "the second run was cold: {second}"
    );
    // The QA container's sandbox: not root, no capabilities, no new
    // privileges, no API key; the cache in its volume.
    let check = meta(&recs[1], "qa-4.log");
    assert!(!check.contains("uid=0"), "{check}");
    assert!(check.contains("CapEff:\t0000000000000000"), "{check}");
    assert!(check.contains("NoNewPrivs:\t1"), "{check}");
    assert!(check.contains("key=none"), "{check}");
    assert!(check.contains("cache=/agentq-cache/go/build"), "{check}");
    // Started ahead on a `fuse-overlayfs` host, its root directory lost its
    // group bits (path lookups then skip a FUSE round trip); elsewhere it
    // is as Docker made it.
    let root = if fuse { "root=705" } else { "root=755" };
    assert!(check.contains(root), "{check}");
    // And there it read its toolchain from the image's /usr copied into a
    // volume, mounted read-only; elsewhere from the image's own.
    assert_eq!(check.contains("usr=read-only-mount"), fuse, "{check}");
    // No container left behind.
    assert!(env.containers_of(&recs[1].id).is_empty());
}

/// A failing command stops QA there, with its own code, and the commands
/// after it never run; each command's time limit holds.
#[tokio::test(flavor = "multi_thread")]
async fn qa_in_one_container_stops_at_the_first_failure_and_keeps_time_limits() {
    let env = world();
    edit_config(&env, |t| {
        t.replace(
            "qa = [[",
            "qa = [[\"sh\", \"-c\", \"echo first; exit 3\"], [\"sh\", \"-c\", \"echo never\"]]\nold_qa = [[",
        )
        .replace("old_qa = ", "# ")
    });
    let _w = env.worker("w1", 1);
    let id = env.enqueue(&[
        "--repo",
        "demo",
        "--branch",
        "main",
        "--task",
        "Look @agentq-test print looking",
    ]);
    let rec = env.wait_final(&id, LONG).await;
    assert_eq!(rec.qa_status, Some(QaStatus::Failed), "{rec:#?}");
    assert_eq!(rec.qa_command, "sh -c echo first; exit 3", "{rec:#?}");
    assert!(rec.error.contains("exited with code 3"), "{rec:#?}");
    assert!(meta(&rec, "qa-1.log").contains("first"));
    assert!(
        !meta(&rec, "qa.log").contains("never"),
        "{}",
        meta(&rec, "qa.log")
    );
    // A command past `qa_timeout_secs` is stopped and said so.
    edit_config(&env, |t| {
        t.replace("echo first; exit 3", "sleep 30")
            .replace("qa_cache_gb = 2", "qa_cache_gb = 2\nqa_timeout_secs = 2")
    });
    drop(_w);
    let _w = env.worker("w2", 1);
    let id = env.enqueue(&[
        "--repo",
        "demo",
        "--branch",
        "main",
        "--task",
        "Look again @agentq-test print looking",
    ]);
    let rec = env.wait_final(&id, LONG).await;
    assert_eq!(rec.qa_status, Some(QaStatus::Failed), "{rec:#?}");
    assert!(rec.error.contains("ran past 2s"), "{rec:#?}");
}

/// The Docker engine's storage driver (`docker info`).
fn docker_storage_driver() -> String {
    let out = std::process::Command::new("docker")
        .args(["info", "--format", "{{.Driver}}"])
        .output()
        .expect("docker info");
    assert!(out.status.success(), "docker info failed: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Waits (3 minutes at most) until the copy of `image`'s `/usr` is whole:
/// its marker (a volume naming the copy) and the copy exist.
fn wait_usr_copy(image: &str) {
    let docker = |args: &[&str]| {
        let out = std::process::Command::new("docker")
            .args(args)
            .output()
            .expect("docker");
        assert!(out.status.success(), "docker {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let id = docker(&["image", "inspect", "-f", "{{.Id}}", image]);
    let image_filter = format!("label=agentq.usr.image={id}");
    let marker = [
        "volume",
        "ls",
        "-q",
        "--filter",
        &image_filter,
        "--filter",
        "label=agentq.usr.copy",
    ];
    // A marker whose copy exists (a marker left naming a removed copy is
    // replaced by the worker).
    let whole = || {
        docker(&marker).lines().any(|m| {
            let copy = docker(&[
                "volume",
                "inspect",
                "-f",
                "{{index .Labels \"agentq.usr.copy\"}}",
                m,
            ]);
            std::process::Command::new("docker")
                .args(["volume", "inspect", &copy])
                .output()
                .is_ok_and(|o| o.status.success())
        })
    };
    let t = std::time::Instant::now();
    while !whole() {
        assert!(
            t.elapsed() < Duration::from_secs(180),
            "the copy of {image}'s /usr was not made in 3 minutes"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn edit_config(env: &TestEnv, f: impl FnOnce(String) -> String) {
    let p = env.config_path().to_path_buf();
    let text = std::fs::read_to_string(&p).unwrap();
    std::fs::write(&p, f(text)).unwrap();
}

/// `cache_for_agents = true` mounts the same caches into the agent's run;
/// without it, the agent gets none.
#[tokio::test(flavor = "multi_thread")]
async fn cache_for_agents_mounts_the_caches_into_agent_runs() {
    let env = world();
    let task = "Check @agentq-test env-check GOMODCACHE CARGO_TARGET_DIR PIP_CACHE_DIR";
    let mut logs = Vec::new();
    for (issue, on) in [("1", false), ("2", true)] {
        edit_config(&env, |t| {
            format!(
                "cache_for_agents = {on}\n{}",
                t.replace("cache_for_agents = false\n", "")
            )
        });
        let _w = env.worker(&format!("w{issue}"), 1);
        let id = env.enqueue(&["--repo", "demo", "--issue", issue, "--task", task]);
        let rec = env.wait_final(&id, LONG).await;
        assert_eq!(rec.state, JobState::Completed, "{rec:#?}");
        logs.push(meta(&rec, "agent-codex.log"));
    }
    for var in ["GOMODCACHE", "CARGO_TARGET_DIR", "PIP_CACHE_DIR"] {
        assert!(
            logs[0].contains(&format!("env {var} is unset")),
            "{}",
            logs[0]
        );
        assert!(
            logs[1].contains(&format!("env {var} is set")),
            "{}",
            logs[1]
        );
    }
}

/// The names of the running containers of job `id` (`docker ps`).
fn running_names(env: &TestEnv, id: &str) -> Vec<String> {
    let out = std::process::Command::new("docker")
        .args(["ps", "--format", "{{.Names}}", "--filter"])
        .arg(format!("label=agentq.job={id}"))
        .arg("--filter")
        .arg(format!("label=agentq.namespace={}", env.ns))
        .output()
        .expect("docker ps");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// Waits up to `secs` seconds for `f` to hold.
async fn within(secs: u64, what: &str, f: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(std::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Issue 34: QA's container is started while the agent runs (held, running
/// nothing), and QA then runs in it on the commit; one that died while held
/// is replaced by one started then; a run that never gets to QA (cancelled
/// during the agent's run) removes it itself, at once (not the janitor).
#[tokio::test(flavor = "multi_thread")]
async fn the_qa_container_starts_during_the_agents_run_and_goes_when_unused() {
    let env = world();
    let _w = env.worker("w1", 1);
    let qa_name = |id: &str| format!("agentq-{}-1-qa", id.to_lowercase());
    let agent_name = |id: &str| format!("agentq-{}-1", id.to_lowercase());
    let enqueue = |issue: &str, secs: &str| {
        env.enqueue(&[
            "--repo",
            "demo",
            "--issue",
            issue,
            "--task",
            &format!("Wait @agentq-test sleep {secs}"),
        ])
    };
    // Used: it is there while the agent sleeps, and QA passes in it; then
    // killed while held: QA passes in another.
    for (issue, kill) in [("1", false), ("2", true)] {
        let id = enqueue(issue, "4");
        within(60, "the QA container runs while the agent does", || {
            let names = running_names(&env, &id);
            names.contains(&qa_name(&id)) && names.contains(&agent_name(&id))
        })
        .await;
        if kill {
            let killed = std::process::Command::new("docker")
                .args(["kill", &qa_name(&id)])
                .output()
                .unwrap();
            assert!(killed.status.success(), "{killed:?}");
        }
        let rec = env.wait_final(&id, LONG).await;
        assert_eq!(
            (rec.state, rec.qa_status),
            (JobState::Completed, Some(QaStatus::Passed)),
            "{rec:#?}\n{}\n{}",
            meta(&rec, "qa.log"),
            env.worker_logs()
        );
        assert!(
            meta(&rec, "qa-4.log").contains("uid="),
            "{}",
            meta(&rec, "qa.log")
        );
        assert!(env.containers_of(&id).is_empty());
    }
    // Unused: cancelled while the agent sleeps.
    let id = enqueue("3", "60");
    within(60, "the QA container runs while the agent does", || {
        let names = running_names(&env, &id);
        names.contains(&qa_name(&id)) && names.contains(&agent_name(&id))
    })
    .await;
    env.cli_ok(&["cancel", &id]);
    let rec = env.wait_final(&id, LONG).await;
    assert_eq!(rec.state, JobState::Cancelled, "{rec:#?}");
    assert_eq!(rec.qa_status, None, "{rec:#?}");
    within(10, "the unused QA container is removed", || {
        env.containers_of(&id).is_empty()
    })
    .await;
    let logs = env.worker_logs();
    assert!(
        !logs
            .lines()
            .any(|l| l.contains("reaping stale agent container") && l.contains(&id)),
        "the janitor removed it, not its run\n{logs}"
    );
}

/// Issue 34: a QA container started ahead (the repository has a language
/// when the run starts) that QA then has no use for (the agent's commit
/// removed the marker: nothing to check, so QA skips without a checkout)
/// is removed as any unused one: before the job is said completed (Docker
/// made slow to remove it), with no QA tree left behind.
#[tokio::test(flavor = "multi_thread")]
async fn a_commit_with_nothing_to_check_leaves_no_qa_container_started_ahead() {
    let image = "agentq-redteam:latest";
    require_directives(image, &["rm", "git-add-all", "sleep"]);
    let env = TestEnv::with_config("");
    env.append_config(&format!("[agents.codex]\nimage = \"{image}\"\n"));
    env.set_env("AGENTQ_TEST_SLOW_REMOVAL_MS", "1500");
    env.remotes.create(
        "core",
        "demo",
        &[("requirements.txt", "\n"), ("README.md", "# demo\n")],
    );
    let _w = env.worker("w1", 1);
    let id = env.enqueue(&[
        "--repo",
        "demo",
        "--issue",
        "1",
        "--task",
        "Drop @redteam sleep 3 @redteam rm requirements.txt @redteam git-add-all",
    ]);
    let qa_name = format!("agentq-{}-1-qa", id.to_lowercase());
    within(60, "the QA container runs while the agent does", || {
        running_names(&env, &id).contains(&qa_name)
    })
    .await;
    let rec = env.wait_final(&id, LONG).await;
    assert_eq!(
        (rec.state, rec.qa_status),
        (JobState::Completed, Some(QaStatus::Skipped)),
        "{rec:#?}\n{}\n{}",
        meta(&rec, "qa.log"),
        env.worker_logs()
    );
    let left = env.containers_of(&id);
    assert!(
        left.is_empty(),
        "the job was said completed before its unused QA container was removed: {left:?}"
    );
    assert!(!Path::new(&rec.workspace_dir).join(".meta/qa-tree").exists());
}
