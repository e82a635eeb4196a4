//! Worker processes: starting them, signalling them, reading their logs.

use std::{
    path::PathBuf,
    process::{Child, Command},
    time::{Duration, Instant},
};

use crate::*;

impl TestEnv {
    /// Starts a worker process with `--concurrency n`.
    pub fn worker(&self, name: &str, concurrency: u32) -> WorkerProc {
        self.worker_with_args(name, &["--concurrency", &concurrency.to_string()])
    }

    /// Starts a worker standing in for host `name` (`--host name`), with a
    /// workspace root of its own; returns it and that root.
    pub fn host_worker(&self, name: &str, concurrency: u32) -> (WorkerProc, PathBuf) {
        let root = self.dir.path().join(format!("ws-{name}"));
        std::fs::create_dir_all(&root).unwrap();
        let w = self.worker_with_args(
            name,
            &[
                "--concurrency",
                &concurrency.to_string(),
                "--host",
                name,
                "--workspace-root",
                root.to_str().unwrap(),
            ],
        );
        (w, root)
    }

    /// Starts a worker process with exactly these arguments.
    pub fn worker_with_args(&self, name: &str, args: &[&str]) -> WorkerProc {
        self.spawn_worker(name, Command::new(bin("agentq-worker")), args, None)
    }

    /// Starts a worker in network namespace `netns` (as another host would be),
    /// reaching Redis at `redis_url`.
    pub fn worker_in_netns(
        &self,
        name: &str,
        netns: &str,
        redis_url: &str,
        args: &[&str],
    ) -> WorkerProc {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", netns]).arg(bin("agentq-worker"));
        self.spawn_worker(name, cmd, args, Some(redis_url))
    }

    fn spawn_worker(
        &self,
        name: &str,
        mut cmd: Command,
        args: &[&str],
        redis_url: Option<&str>,
    ) -> WorkerProc {
        let log = self.dir.path().join("logs").join(format!("{name}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let mut env = self.env();
        if let Some(u) = redis_url {
            env.insert("AGENTQ_REDIS_URL", u.to_string());
        }
        for key in self.unset_env.lock().unwrap().iter() {
            cmd.env_remove(key);
        }
        let child = cmd
            .args(args)
            .envs(env)
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("cannot start agentq-worker");
        WorkerProc {
            child: Some(child),
            log,
        }
    }

    /// All worker logs, for failure messages.
    pub fn worker_logs(&self) -> String {
        let mut out = String::new();
        if let Ok(rd) = std::fs::read_dir(self.dir.path().join("logs")) {
            for e in rd.flatten() {
                let text = std::fs::read_to_string(e.path()).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(40).collect();
                out.push_str(&format!("--- {} (last 40 lines)\n", e.path().display()));
                for l in tail.into_iter().rev() {
                    out.push_str(l);
                    out.push('\n');
                }
            }
        }
        out
    }
}

/// A running `agentq-worker`, killed on drop.
pub struct WorkerProc {
    child: Option<Child>,
    /// Its log file.
    pub log: PathBuf,
}

impl WorkerProc {
    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// SIGKILL, and wait for it.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits up to `timeout` for the worker to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let mut c = self.child.take().unwrap();
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = c.try_wait().unwrap() {
                return st;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                panic!("worker did not exit within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends `signal` (e.g. "TERM") without waiting.
    pub fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().unwrap().is_none())
    }

    /// Waits up to `timeout` until the worker's log holds `text`.
    ///
    /// Signals of one kind sent close together may reach a process as one (the
    /// kernel keeps one pending SIGTERM, not two), so a test that means two
    /// separate signals waits for the worker to log the first before sending
    /// the second.
    pub fn wait_log(&self, text: &str, timeout: Duration) {
        self.wait_log_count(text, 1, timeout);
    }

    /// How many lines of the worker's log hold `text` now.
    pub fn log_count(&self, text: &str) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(text))
            .count()
    }

    /// Waits up to `timeout` until at least `n` lines of the worker's log hold
    /// `text` (e.g. `n` rounds of a periodic task that logs each round).
    pub fn wait_log_count(&self, text: &str, n: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.log_count(text) < n {
            assert!(
                Instant::now() < deadline,
                "worker log has fewer than {n} lines with {text:?} after {timeout:?}:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends `signal` (e.g. "TERM") and waits up to `timeout` for exit; returns the status.
    pub fn signal_and_wait(&mut self, signal: &str, timeout: Duration) -> std::process::ExitStatus {
        self.signal(signal);
        self.wait_exit(timeout)
    }
}

impl Drop for WorkerProc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Waits until `n` workers are registered and live (`agentq workers`).
pub async fn wait_live_workers(env: &TestEnv, n: usize) {
    let what = format!("{n} workers registered and live");
    env.poll_until(&what, Duration::from_secs(60), async || {
        let out = env.cli(&["workers", "--json"], None);
        let live = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.trim_start().starts_with('{'))
            .count();
        if live >= n {
            Ok(())
        } else {
            Err(format!("{live} live"))
        }
    })
    .await
}
