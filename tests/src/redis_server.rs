//! A private `redis-server` per test.

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::*;

/// A private redis-server on a loopback port, stopped on drop.
pub struct Redis {
    child: Child,
    /// Its port.
    pub port: u16,
    dir: tempfile::TempDir,
    /// `requirepass`, if set.
    pub password: Option<String>,
    aof: bool,
    bind: String,
}

impl Redis {
    /// Starts redis-server and waits until it answers.
    pub fn start() -> Self {
        Self::spawn(None, None, false, tempfile::tempdir().unwrap(), "127.0.0.1")
    }

    /// Starts redis-server on `port`.
    pub fn start_on(port: u16) -> Self {
        Self::start_with(port, None)
    }

    /// Starts redis-server on a free port, with `requirepass` `password`.
    pub fn start_with_password(password: &str) -> Self {
        Self::spawn(
            None,
            Some(password),
            false,
            tempfile::tempdir().unwrap(),
            "127.0.0.1",
        )
    }

    /// Starts redis-server on `port`, with `requirepass` if `password` is set.
    pub fn start_with(port: u16, password: Option<&str>) -> Self {
        Self::spawn(
            Some(port),
            password,
            false,
            tempfile::tempdir().unwrap(),
            "127.0.0.1",
        )
    }

    /// Starts redis-server listening on loopback and on `addr` too (an address of
    /// a test network, e.g. a veth end).
    pub fn start_listening_on(addr: &str) -> Self {
        Self::spawn(
            None,
            None,
            false,
            tempfile::tempdir().unwrap(),
            &format!("127.0.0.1 {addr}"),
        )
    }

    /// Starts redis-server with an append-only file (`appendfsync everysec`), so
    /// [`Redis::bounce`] keeps its data, as a production Redis would.
    pub fn start_durable() -> Self {
        Self::spawn(None, None, true, tempfile::tempdir().unwrap(), "127.0.0.1")
    }

    /// Shuts Redis down (it writes its append-only file), keeps it down for
    /// `down`, and starts it again on the same port and data.
    pub fn bounce(&mut self, down: Duration) {
        self.stop();
        std::thread::sleep(down);
        self.start_again();
    }

    /// Shuts Redis down (it writes its append-only file): clients get
    /// "connection refused" until [`Redis::start_again`].
    pub fn stop(&mut self) {
        let mut c = self.conn();
        let _: redis::RedisResult<()> = redis::cmd("SHUTDOWN").query(&mut c);
        let _ = self.child.wait();
    }

    /// Starts a stopped Redis again on the same port and data.
    pub fn start_again(&mut self) {
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        let (aof, bind) = (self.aof, self.bind.clone());
        let new = Self::spawn(
            Some(self.port),
            self.password.clone().as_deref(),
            aof,
            dir,
            &bind,
        );
        drop(std::mem::replace(self, new));
    }

    /// Makes Redis refuse every write (`maxmemory 1`, `noeviction`), as a full
    /// Redis does, or accept them again.
    pub fn refuse_writes(&self, refuse: bool) {
        let mut c = self.conn();
        let max = if refuse { "1" } else { "0" };
        for (k, v) in [("maxmemory-policy", "noeviction"), ("maxmemory", max)] {
            let _: () = redis::cmd("CONFIG")
                .arg("SET")
                .arg(k)
                .arg(v)
                .query(&mut c)
                .unwrap();
        }
    }

    /// Starts redis-server on `port`, or on a free port when `None`: a free
    /// port another test's server took first is given up for another one.
    fn spawn(
        port: Option<u16>,
        password: Option<&str>,
        aof: bool,
        mut dir: tempfile::TempDir,
        bind: &str,
    ) -> Self {
        for _ in 0..5 {
            match Self::try_spawn(port.unwrap_or_else(free_port), password, aof, dir, bind) {
                Ok(r) => return r,
                Err((back, why)) if port.is_none() => {
                    eprintln!("{why}; trying another port");
                    dir = back;
                }
                Err((_, why)) => panic!("{why}"),
            }
        }
        panic!("no free port for redis-server after 5 tries");
    }

    /// Starts redis-server on `port` and waits until it answers; `Err` (with
    /// the data directory back) when another process serves that port.
    fn try_spawn(
        port: u16,
        password: Option<&str>,
        aof: bool,
        dir: tempfile::TempDir,
        bind: &str,
    ) -> Result<Self, (tempfile::TempDir, String)> {
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &port.to_string(), "--bind"]);
        cmd.args(bind.split_whitespace());
        if bind != "127.0.0.1" && password.is_none() {
            // Only a test network's address besides loopback.
            cmd.args(["--protected-mode", "no"]);
        }
        cmd.args([
            "--save",
            "",
            "--appendonly",
            if aof { "yes" } else { "no" },
            "--appendfsync",
            "everysec",
        ]);
        if let Some(p) = password {
            cmd.args(["--requirepass", p, "--protected-mode", "no"]);
        }
        let child = cmd
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start redis-server ({e}): install it with `apt-get install -y redis-server`"));
        let mut r = Self {
            child,
            port,
            dir,
            password: password.map(str::to_string),
            aof,
            bind: bind.to_string(),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = r.child.try_wait() {
                let why =
                    format!("redis-server on port {port} exited ({status}): the port is taken");
                return Err((
                    std::mem::replace(&mut r.dir, tempfile::tempdir().unwrap()),
                    why,
                ));
            }
            if let Some(pid) = redis_pid(&r.url()) {
                if pid != r.child.id() {
                    let why = format!("port {port} is another redis-server's (pid {pid})");
                    let _ = r.child.kill();
                    return Err((
                        std::mem::replace(&mut r.dir, tempfile::tempdir().unwrap()),
                        why,
                    ));
                }
                // Ours, and done loading its data (`INFO` answers while it
                // loads; `PING` says LOADING until it is done).
                if r.pings() {
                    return Ok(r);
                }
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {port} did not answer within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether it answers `PING` (not while it loads its data).
    fn pings(&self) -> bool {
        redis::Client::open(self.url())
            .and_then(|c| c.get_connection())
            .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
            .is_ok()
    }

    /// `redis://127.0.0.1:{port}` (with `:password@` when one is set).
    pub fn url(&self) -> String {
        match &self.password {
            Some(p) => format!("redis://:{p}@127.0.0.1:{}", self.port),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    /// Commands Redis has run since it started, as `INFO commandstats` counts
    /// them (commands run inside Lua scripts included).
    pub fn total_commands(&self) -> u64 {
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query(&mut self.conn())
            .unwrap();
        info.lines()
            .filter_map(|l| l.split("calls=").nth(1))
            .filter_map(|rest| rest.split(',').next()?.parse::<u64>().ok())
            .sum()
    }

    /// A blocking connection.
    pub fn conn(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .unwrap()
            .get_connection()
            .unwrap()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl TestEnv {
    /// Stops this world's Redis and starts a new, empty one on the same port.
    pub fn restart_redis(&mut self) {
        let port = self.redis.port;
        let password = self.redis.password.clone();
        let _ = self.redis.child.kill();
        let _ = self.redis.child.wait();
        self.redis = Redis::start_with(port, password.as_deref());
    }
}
