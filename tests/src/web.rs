//! The web console (`agentq web`) as a process.

use std::{
    path::PathBuf,
    process::{Child, Command},
    time::Duration,
};

use crate::*;

/// A running `agentq web` (the web console), killed on drop.
pub struct WebProc {
    child: Child,
    /// Its base URL, `http://127.0.0.1:PORT`.
    pub url: String,
    /// Its log file.
    pub log: PathBuf,
}

impl Drop for WebProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl TestEnv {
    /// Starts `agentq web` on a free loopback port; with `token`, the operator
    /// token in `AGENTQ_WEB_TOKEN` and `--token-env AGENTQ_WEB_TOKEN`, else
    /// read-only. Returns once it answers.
    pub fn web(&self, token: Option<&str>) -> WebProc {
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let log = self.dir.path().join("logs").join(format!("web-{port}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(bin("agentq"));
        cmd.args(["web", "--addr", &addr]).envs(self.env());
        if let Some(t) = token {
            cmd.args(["--token-env", "AGENTQ_WEB_TOKEN"])
                .env("AGENTQ_WEB_TOKEN", t);
        }
        let child = cmd
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("cannot start agentq web");
        wait_listening(&addr, Duration::from_secs(30), "agentq web", &log);
        WebProc {
            child,
            url: format!("http://{addr}"),
            log,
        }
    }
}
