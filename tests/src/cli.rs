//! The built binaries and the `agentq` CLI: finding them, running them.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
};

use crate::*;

/// Repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Path of a built binary, panicking with advice if it is missing.
pub fn bin(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    let path = target.join(profile).join(name);
    assert!(
        path.is_file(),
        "{} is missing: build the binaries first (`cargo build --workspace --bins [--release]`, or `scripts/test`)",
        path.display()
    );
    path
}

/// The `id` of each line of `--json` output (one object per line).
pub fn json_ids(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                .as_str()
                .unwrap_or_else(|| panic!("no id in {l}"))
                .to_string()
        })
        .collect()
}

impl TestEnv {
    /// Runs `agentq args...` with `stdin`, returning its output.
    pub fn cli(&self, args: &[&str], stdin: Option<&str>) -> Output {
        cli_with_env(&self.env(), args, stdin)
    }

    /// Runs `agentq args...` and returns stdout, failing the test on a non-zero exit.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args, None);
        assert!(
            out.status.success(),
            "agentq {args:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Enqueues a job with `agentq enqueue` and returns its id.
    pub fn enqueue(&self, args: &[&str]) -> String {
        let mut all = vec!["enqueue"];
        all.extend_from_slice(args);
        self.cli_ok(&all)
    }

    /// Enqueues NDJSON `lines` with `agentq enqueue - --json` and returns the ids,
    /// failing the test if any line is refused.
    pub fn enqueue_ndjson(&self, lines: &str) -> Vec<String> {
        let out = self.cli(&["enqueue", "-", "--json"], Some(lines));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        json_ids(&String::from_utf8_lossy(&out.stdout))
    }

    /// Enqueues a `codex` job on `core/demo` for `issue` with `task` (test
    /// agent directives go in the task) and returns its id.
    pub fn enqueue_for_issue(&self, issue: u32, task: &str) -> String {
        self.enqueue(&[
            "--repo",
            "demo",
            "--org",
            "core",
            "--issue",
            &issue.to_string(),
            "--task",
            task,
            "--agent",
            "codex",
        ])
    }
}

/// Runs `agentq` with exactly `env` added.
pub fn cli_with_env(
    env: &HashMap<&'static str, String>,
    args: &[&str],
    stdin: Option<&str>,
) -> Output {
    use std::io::Write;
    let mut child = Command::new(bin("agentq"))
        .args(args)
        .envs(env)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start agentq");
    // Feed stdin from another thread: the child writes results while it reads, and
    // a full stdout pipe would otherwise block both sides.
    let feeder = stdin.map(|text| {
        let mut pipe = child.stdin.take().unwrap();
        let text = text.to_string();
        std::thread::spawn(move || {
            let _ = pipe.write_all(text.as_bytes());
        })
    });
    let out = child.wait_with_output().unwrap();
    if let Some(f) = feeder {
        f.join().unwrap();
    }
    out
}

impl TestEnv {
    /// `agentq stats --json` as a value.
    pub fn stats_json(&self) -> serde_json::Value {
        serde_json::from_str(&self.cli_ok(&["stats", "--json"])).unwrap()
    }
}

/// The row of pool `name` in `agentq stats --json`'s `pools`.
pub fn stats_pool<'a>(stats: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    stats["pools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["pool"] == name)
        .unwrap_or_else(|| panic!("no pool {name} in stats: {stats}"))
}
