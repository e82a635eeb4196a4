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

/// A trivial job that commits one file, p50/p95 of 20 (prep start → final
/// state: the agent's container, the export made in it, the branch pushed),
/// beside `docker run --rm --init` of the same image and agent command on the
/// agents' network, p50/p95 of 20.
pub async fn committing_job() -> Vec<Row> {
    let env = env_with("");
    env.set_env("RUST_LOG", "info,agentq_worker=debug");
    env.remotes.create("core", "demo", &[]);
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
    drop(w);
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
    vec![Row {
        what: "a trivial job that commits one file, prep start → final state, p50 / p95 of 20 \
               (1 worker, warm mirror; one container: the export made in it by its watchdog; \
               the branch pushed)"
            .into(),
        agentq: format!("{a50:.3} s / {a95:.3} s"),
        peer: format!(
            "`docker run --rm --init --network agentq-agents` of the same image and agent command: {d50:.3} s / {d95:.3} s"
        ),
        ratio: format!(
            "{:.2}× ({:+.0} ms) / {:+.0} ms at p95",
            a50 / d50,
            (a50 - d50) * 1000.0,
            (a95 - d95) * 1000.0
        ),
    }]
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

/// Both rows.
pub async fn rows() -> Vec<Row> {
    let mut rows = committing_job().await;
    rows.extend(qa_go().await);
    rows
}
