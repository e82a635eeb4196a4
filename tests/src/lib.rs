//! Test harness for agentq's end-to-end tests: a real `redis-server` per test on a
//! loopback port, the real Docker engine, real git remotes (bare repositories in a
//! temp directory), and the built `agentq` and `agentq-worker` binaries.
//!
//! Anything missing (redis-server, Docker, the test image, the binaries) fails the
//! test at once with a message that says how to fix it; nothing is skipped.

use std::{
    collections::HashMap,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

pub mod forge_sim;
pub mod llm_stub;

use agentq_shared::{record::JobRecord, status::JobState, store::JobStore};

/// The image the tests run agents in (built by `scripts/build-test-images`).
pub const TEST_IMAGE: &str = "agentq-test-agent:latest";

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

/// A free loopback TCP port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

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
        Self::start_on(free_port())
    }

    /// Starts redis-server on `port`.
    pub fn start_on(port: u16) -> Self {
        Self::start_with(port, None)
    }

    /// Starts redis-server on `port`, with `requirepass` if `password` is set.
    pub fn start_with(port: u16, password: Option<&str>) -> Self {
        Self::spawn(
            port,
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
            free_port(),
            None,
            false,
            tempfile::tempdir().unwrap(),
            &format!("127.0.0.1 {addr}"),
        )
    }

    /// Starts redis-server with an append-only file (`appendfsync everysec`), so
    /// [`Redis::bounce`] keeps its data, as a production Redis would.
    pub fn start_durable() -> Self {
        Self::spawn(
            free_port(),
            None,
            true,
            tempfile::tempdir().unwrap(),
            "127.0.0.1",
        )
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
        let new = Self::spawn(self.port, self.password.clone().as_deref(), aof, dir, &bind);
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

    fn spawn(
        port: u16,
        password: Option<&str>,
        aof: bool,
        dir: tempfile::TempDir,
        bind: &str,
    ) -> Self {
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
        let r = Self {
            child,
            port,
            dir,
            password: password.map(str::to_string),
            aof,
            bind: bind.to_string(),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut c) = redis::Client::open(r.url()).and_then(|c| c.get_connection()) {
                if redis::cmd("PING").query::<String>(&mut c).is_ok() {
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {port} did not answer within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = &r.dir;
        r
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

/// Bare git repositories under `{base}/{org}/{repo}.git`, the worker's `git_base`.
pub struct GitRemotes {
    /// The temp directory holding them.
    pub base: tempfile::TempDir,
}

fn run_git(dir: &Path, args: &[&str]) -> String {
    // Workspaces belong to the agents' user; the tests look at them as root.
    let out = Command::new("git")
        .args(["-c", "safe.directory=*"])
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Runs git in `dir` and returns its stdout, failing the test on error.
pub fn git(dir: &Path, args: &[&str]) -> String {
    run_git(dir, args)
}

impl GitRemotes {
    /// An empty set of remotes.
    pub fn new() -> Self {
        Self {
            base: tempfile::tempdir().unwrap(),
        }
    }

    /// `git_base` for the worker.
    pub fn base(&self) -> String {
        self.base.path().to_string_lossy().into_owned()
    }

    /// Creates `{org}/{repo}.git` with one commit holding `files`.
    pub fn create(&self, org: &str, repo: &str, files: &[(&str, &str)]) -> PathBuf {
        let bare = self.base.path().join(org).join(format!("{repo}.git"));
        std::fs::create_dir_all(&bare).unwrap();
        run_git(
            &bare,
            &["init", "--quiet", "--bare", "--initial-branch=main"],
        );
        let work = tempfile::tempdir().unwrap();
        run_git(work.path(), &["init", "--quiet", "--initial-branch=main"]);
        let mut files = files.to_vec();
        if files.is_empty() {
            files.push(("README.md", "# test repo\n"));
        }
        for (name, body) in files {
            let p = work.path().join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, body).unwrap();
        }
        run_git(work.path(), &["add", "-A"]);
        run_git(work.path(), &["commit", "--quiet", "-m", "initial"]);
        run_git(
            work.path(),
            &["push", "--quiet", bare.to_str().unwrap(), "main"],
        );
        bare
    }
}

impl GitRemotes {
    /// Publishes `refs/pull/{n}/head` in `{org}/{repo}.git` at `main`, as Forgejo
    /// does for pull request `n`.
    pub fn publish_pull(&self, org: &str, repo: &str, n: u64) {
        let bare = self.base.path().join(org).join(format!("{repo}.git"));
        run_git(
            &bare,
            &["update-ref", &format!("refs/pull/{n}/head"), "main"],
        );
    }
}

impl Default for GitRemotes {
    fn default() -> Self {
        Self::new()
    }
}

/// One test's world: Redis, remotes, a workspace root and a config file.
pub struct TestEnv {
    /// The Redis server.
    pub redis: Redis,
    /// Git remotes.
    pub remotes: GitRemotes,
    /// Holds the workspace root, config and logs.
    pub dir: tempfile::TempDir,
    config_path: PathBuf,
    /// This world's Redis namespace (unique, so tests sharing one Docker engine
    /// never touch each other's containers).
    pub ns: String,
    extra_env: std::sync::Mutex<HashMap<&'static str, String>>,
    unset_env: std::sync::Mutex<Vec<&'static str>>,
}

/// The base config every test starts from: fast heartbeats and retries.
pub const BASE_CONFIG: &str = r#"
heartbeat_secs = 1
missed_heartbeats = 3
retry_base_secs = 1
max_attempts = 3

[docker]
image = "agentq-test-agent:latest"
memory_mb = 256
cpus = 0.5
pids_limit = 256
timeout_secs = 120
stop_grace_secs = 2
env_keys = []
"#;

impl TestEnv {
    /// A new world with the base config.
    pub fn new() -> Self {
        Self::with_config("")
    }

    /// A new world whose config is the base plus `extra` (TOML): either top-level
    /// keys (put before the base) or tables (put after it), not both.
    pub fn with_config(extra: &str) -> Self {
        Self::with_config_and_redis(extra, Redis::start())
    }

    /// [`TestEnv::with_config`] with a Redis that requires `password`.
    pub fn with_config_and_redis_password(extra: &str, password: &str) -> Self {
        Self::with_config_and_redis(extra, Redis::start_with(free_port(), Some(password)))
    }

    /// A new world on `redis` whose config is the base plus `extra` (see
    /// [`TestEnv::with_config`]).
    pub fn with_config_and_redis(extra: &str, redis: Redis) -> Self {
        let remotes = GitRemotes::new();
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("ws")).unwrap();
        std::fs::create_dir_all(dir.path().join("logs")).unwrap();
        let config_path = dir.path().join("agentq.toml");
        // The test agent writes one line per run to /agentq-test/{job}.runs.log.
        let runs = dir.path().join("runs");
        std::fs::create_dir_all(&runs).unwrap();
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&runs, std::fs::Permissions::from_mode(0o777)).unwrap();
        }
        let base = BASE_CONFIG.replace(
            "env_keys = []",
            &format!(
                "env_keys = []\nmounts = [{{ source = \"{}\", target = \"/agentq-test\" }}]",
                runs.display()
            ),
        );
        // Top-level keys must come before the base config's tables; tables after.
        // A top-level key in `extra` replaces the base's.
        let text = if extra.trim_start().starts_with('[') || extra.is_empty() {
            format!("{base}\n{extra}")
        } else {
            let keys: Vec<&str> = extra
                .lines()
                .filter_map(|l| l.split_once('=').map(|(k, _)| k.trim()))
                .collect();
            let base: String = base
                .lines()
                .filter(|l| {
                    !l.split_once('=')
                        .is_some_and(|(k, _)| keys.contains(&k.trim()) && !l.starts_with(' '))
                })
                .map(|l| format!("{l}\n"))
                .collect();
            format!("{extra}\n{base}")
        };
        std::fs::write(&config_path, text).unwrap();
        let ns = format!("t{}", ulid::Ulid::new().to_string().to_lowercase());
        Self {
            redis,
            remotes,
            dir,
            config_path,
            ns,
            extra_env: Default::default(),
            unset_env: Default::default(),
        }
    }

    /// The test agent's start log of job `id` (one line per start), empty if it
    /// never ran.
    pub fn agent_starts(&self, id: &str) -> String {
        std::fs::read_to_string(
            self.dir
                .path()
                .join("runs")
                .join(format!("{id}.starts.log")),
        )
        .unwrap_or_default()
    }

    /// (start, end) of every finished agent run of job `id`, from the test
    /// agent's own log (host-wide uptime, so runs in different containers and
    /// on different "hosts" compare).
    pub fn agent_intervals(&self, id: &str) -> Vec<(f64, f64)> {
        self.agent_runs(id)
            .lines()
            .map(|l| {
                let field = |k: &str| -> f64 {
                    l.split_whitespace()
                        .find_map(|w| w.strip_prefix(k))
                        .and_then(|v| v.parse().ok())
                        .unwrap_or_else(|| panic!("no {k} in the agent's run line {l:?}"))
                };
                (field("start="), field("end="))
            })
            .collect()
    }

    /// (start, end) of every run of job `id` that started, from the test agent's
    /// own logs: a run that never logged its end (killed, or still running)
    /// lasts forever.
    pub fn agent_spans(&self, id: &str) -> Vec<(f64, f64)> {
        let field = |l: &str, k: &str| -> Option<f64> {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix(k))
                .and_then(|v| v.parse().ok())
        };
        let ended: Vec<(f64, f64)> = self
            .agent_runs(id)
            .lines()
            .filter_map(|l| Some((field(l, "start=")?, field(l, "end=")?)))
            .collect();
        self.agent_starts(id)
            .lines()
            .filter_map(|l| field(l, "start="))
            .map(|s| {
                ended
                    .iter()
                    .find(|(st, _)| (*st - s).abs() < 1e-6)
                    .copied()
                    .unwrap_or((s, f64::INFINITY))
            })
            .collect()
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

    /// Path of this world's config file.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// Jobs whose test agent is at an `@agentq-test hold` now (or was, before
    /// [`TestEnv::release_holds`]).
    pub fn holding(&self) -> Vec<String> {
        let mut ids: Vec<String> = std::fs::read_dir(self.dir.path().join("runs"))
            .map(|d| {
                d.filter_map(|e| {
                    let name = e.ok()?.file_name().to_string_lossy().into_owned();
                    name.strip_suffix(".holding").map(str::to_string)
                })
                .collect()
            })
            .unwrap_or_default();
        ids.sort();
        ids
    }

    /// Lets every test agent at an `@agentq-test hold` (and every later one) go on.
    pub fn release_holds(&self) {
        std::fs::write(self.dir.path().join("runs").join("release"), "").unwrap();
    }

    /// Waits (checking every 100 ms, failing after 4 minutes) until `n` test
    /// agents are at an `@agentq-test hold` together.
    pub async fn wait_holding(&self, n: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(240);
        loop {
            let h = self.holding();
            if h.len() >= n {
                return h;
            }
            assert!(
                Instant::now() < deadline,
                "only {} agents held together, not {n}: {h:?}\n{}",
                h.len(),
                self.worker_logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The agent's own run log for job `id`: one line per finished or stopped run.
    pub fn agent_runs(&self, id: &str) -> String {
        std::fs::read_to_string(self.dir.path().join("runs").join(format!("{id}.runs.log")))
            .unwrap_or_default()
    }

    /// Appends TOML (tables) to this world's config file, for worlds that need
    /// both top-level keys and tables; takes effect for processes started later.
    pub fn append_config(&self, toml: &str) {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.config_path)
            .unwrap();
        writeln!(f, "\n{toml}").unwrap();
    }

    /// Points this world's `templates_dir` at a new templates directory whose
    /// plan `big` has `n` tasks, each `{{ big }}` (with `--var big=…` of 8 000
    /// bytes, 132 of them make a prompt over 1 MiB).
    pub fn use_big_plan_templates(&self, n: usize) {
        let dir = self.dir.path().join("big-templates");
        std::fs::create_dir_all(dir.join("plans")).unwrap();
        let tasks: Vec<String> = (0..n).map(|i| format!("\"{i}: {{{{ big }}}}\"")).collect();
        std::fs::write(
            dir.join("plans/big.toml"),
            format!(
                "title = \"Big\"\ndescription = \"A long plan\"\n\n[[phases]]\nname = \"All\"\ntasks = [{}]\n",
                tasks.join(", ")
            ),
        )
        .unwrap();
        // A top-level key: before the config's tables.
        let text = std::fs::read_to_string(&self.config_path).unwrap();
        std::fs::write(
            &self.config_path,
            format!("templates_dir = \"{}\"\n{text}", dir.display()),
        )
        .unwrap();
    }

    /// The workspace root.
    pub fn workspace_root(&self) -> PathBuf {
        self.dir.path().join("ws")
    }

    /// Starts a simulated forge that accepts `token` and serves this world's
    /// git remotes, and points every agentq process started from now on at it
    /// (`AGENTQ_FORGE_URL`, `AGENTQ_GIT_BASE`, and the token in
    /// `AGENTQ_TEST_FORGE_TOKEN`, which the config's `[forge] token_env` must
    /// name).
    pub async fn start_forge(&self, token: &str) -> forge_sim::ForgeSim {
        let sim = forge_sim::ForgeSim::start(token, self.remotes.base.path().to_path_buf()).await;
        self.set_env("AGENTQ_FORGE_URL", sim.url());
        self.set_env("AGENTQ_GIT_BASE", sim.url());
        self.set_env("AGENTQ_TEST_FORGE_TOKEN", token);
        sim
    }

    /// Sets (or overrides) an environment variable for every agentq process
    /// started from now on.
    pub fn set_env(&self, key: &'static str, value: impl Into<String>) {
        self.extra_env.lock().unwrap().insert(key, value.into());
    }

    /// Leaves `key` out of the environment of every agentq process started
    /// from now on (one of the world's own, e.g. `AGENTQ_WORKSPACE_ROOT`, so the
    /// config file's value counts).
    pub fn unset_env(&self, key: &'static str) {
        self.extra_env.lock().unwrap().remove(key);
        self.unset_env.lock().unwrap().push(key);
    }

    /// Environment for agentq processes.
    pub fn env(&self) -> HashMap<&'static str, String> {
        let mut env = self.base_env();
        env.extend(self.extra_env.lock().unwrap().clone());
        for key in self.unset_env.lock().unwrap().iter() {
            env.remove(key);
        }
        env
    }

    fn base_env(&self) -> HashMap<&'static str, String> {
        HashMap::from([
            ("AGENTQ_REDIS_URL", self.redis.url()),
            (
                "AGENTQ_CONFIG",
                self.config_path.to_string_lossy().into_owned(),
            ),
            (
                "AGENTQ_WORKSPACE_ROOT",
                self.workspace_root().to_string_lossy().into_owned(),
            ),
            ("AGENTQ_GIT_BASE", self.remotes.base()),
            ("AGENTQ_NAMESPACE", self.ns.clone()),
            ("RUST_LOG", "info,agentq_worker=debug".to_string()),
        ])
    }

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

    /// The Redis key `{ns}:{suffix}`.
    pub fn key(&self, suffix: &str) -> String {
        format!("{}:{suffix}", self.ns)
    }

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

    /// Enqueues a job with `agentq enqueue` and returns its id.
    pub fn enqueue(&self, args: &[&str]) -> String {
        let mut all = vec!["enqueue"];
        all.extend_from_slice(args);
        self.cli_ok(&all)
    }

    /// Starts a worker process with `--concurrency n`.
    pub fn worker(&self, name: &str, concurrency: u32) -> WorkerProc {
        self.worker_with_args(name, &["--concurrency", &concurrency.to_string()])
    }

    /// Stops this world's Redis and starts a new, empty one on the same port.
    pub fn restart_redis(&mut self) {
        let port = self.redis.port;
        let password = self.redis.password.clone();
        let _ = self.redis.child.kill();
        let _ = self.redis.child.wait();
        self.redis = Redis::start_with(port, password.as_deref());
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

    /// An async store on this world's Redis.
    pub async fn store(&self) -> JobStore {
        JobStore::connect(&self.redis.url(), &self.ns, Duration::from_secs(5))
            .await
            .unwrap()
    }

    /// Waits until job `id` is in a final state; fails the test after `timeout`.
    pub async fn wait_final(&self, id: &str, timeout: Duration) -> JobRecord {
        self.wait_for(id, timeout, |r| r.state.is_final()).await
    }

    /// Waits until job `id`'s record satisfies `pred`; fails the test after `timeout`.
    pub async fn wait_for(
        &self,
        id: &str,
        timeout: Duration,
        pred: impl Fn(&JobRecord) -> bool,
    ) -> JobRecord {
        let store = self.store().await;
        let deadline = Instant::now() + timeout;
        loop {
            let rec = store.get(id).await.unwrap();
            if let Some(r) = &rec {
                if pred(r) {
                    return r.clone();
                }
            }
            assert!(
                Instant::now() < deadline,
                "job {id} did not reach the expected state within {timeout:?}; last record: {rec:#?}\n{}",
                self.worker_logs()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
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

impl Drop for TestEnv {
    /// Removes the containers this world's workers left (a worker killed with
    /// `kill -9` leaves its agent's container), so the suite leaves nothing
    /// behind on the shared engine. Only this world's namespace: other tests'
    /// containers are never touched.
    fn drop(&mut self) {
        let ids = containers_with_label("agentq.namespace", &self.ns);
        if !ids.is_empty() {
            let _ = Command::new("docker")
                .args(["rm", "-f", "-v"])
                .args(&ids)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

impl Default for TestEnv {
    fn default() -> Self {
        Self::new()
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
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = env.cli(&["workers", "--json"], None);
        let live = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.trim_start().starts_with('{'))
            .count();
        if live >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "only {live} of {n} workers registered\n{}",
            env.worker_logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The most of the (start, end) intervals that overlap at any instant (ends
/// before starts at the same instant: touching is not overlapping).
pub fn max_overlap(iv: &[(f64, f64)]) -> usize {
    let mut points: Vec<(f64, i32)> = iv.iter().flat_map(|(s, e)| [(*s, 1), (*e, -1)]).collect();
    points.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap().then(a.1.cmp(&b.1)));
    let (mut cur, mut max) = (0i32, 0i32);
    for (_, d) in points {
        cur += d;
        max = max.max(cur);
    }
    max as usize
}

/// The kernel's uptime in seconds: the clock the test agent logs its runs on
/// (host-wide, so it compares with runs in any container).
pub fn uptime() -> f64 {
    std::fs::read_to_string("/proc/uptime")
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// `spans` (see [`TestEnv::agent_spans`]) with every run that started before
/// `gone` ending by then at the latest: for a test that saw, at [`uptime`]
/// `gone`, the containers of those runs stopped, though a run killed before it
/// could log its end seems to last forever.
pub fn ended_by(spans: Vec<(f64, f64)>, gone: f64) -> Vec<(f64, f64)> {
    spans
        .into_iter()
        .map(|(start, end)| (start, if start < gone { end.min(gone) } else { end }))
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

/// The patch a run left uncommitted (`.meta/leftovers-1.patch`), after
/// checking that the record says it kept `files` files that way.
pub fn kept_leftovers_patch(rec: &JobRecord, files: usize) -> String {
    assert_eq!(
        rec.leftovers,
        format!(
            "agent left {files} files uncommitted; kept as a patch, not pushed (.meta/leftovers-1.patch)"
        ),
        "{rec:#?}"
    );
    std::fs::read_to_string(Path::new(&rec.workspace_dir).join(".meta/leftovers-1.patch")).unwrap()
}

/// Whether a job is in a final state named `state`.
pub fn is_state(rec: &JobRecord, state: JobState) -> bool {
    rec.state == state
}

/// A network namespace joined to the host by a veth pair: a test "host" with an
/// address of its own, whose link the test can cut and heal. Removed on drop.
pub struct NetNs {
    /// The namespace's name (for `ip netns exec`).
    pub name: String,
    host_if: String,
    /// The host end's address (listen here for the namespace to reach you).
    pub host_addr: String,
    /// The namespace end's address (a process inside listens here for the host
    /// to reach it while the link is up).
    pub ns_addr: String,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap_or_else(|e| {
        panic!("cannot run `ip` ({e}): install iproute2; network namespaces need root")
    });
    assert!(
        out.status.success(),
        "ip {args:?} failed: {} (network namespaces need root and iproute2)",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl NetNs {
    /// Makes a namespace and a veth pair on a /30 of its own.
    pub fn new() -> Self {
        let n = (std::process::id() as u16 ^ free_port()) % 250 + 1;
        let tag = format!("{:x}", ulid::Ulid::new().random() as u32);
        let name = format!("aq{tag}");
        let host_if = format!("aqh{tag}");
        let ns_if = format!("aqn{tag}");
        let host_addr = format!("10.213.{n}.1");
        let ns_addr = format!("10.213.{n}.2");
        ip(&["netns", "add", &name]);
        ip(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if,
        ]);
        ip(&["link", "set", &ns_if, "netns", &name]);
        ip(&["addr", "add", &format!("{host_addr}/30"), "dev", &host_if]);
        ip(&["link", "set", &host_if, "up"]);
        ip(&[
            "netns",
            "exec",
            &name,
            "ip",
            "addr",
            "add",
            &format!("{ns_addr}/30"),
            "dev",
            &ns_if,
        ]);
        ip(&["netns", "exec", &name, "ip", "link", "set", &ns_if, "up"]);
        ip(&["netns", "exec", &name, "ip", "link", "set", "lo", "up"]);
        Self {
            name,
            host_if,
            host_addr,
            ns_addr,
        }
    }

    /// Cuts the namespace off (its link goes down).
    pub fn cut(&self) {
        ip(&["link", "set", &self.host_if, "down"]);
    }

    /// Heals the link.
    pub fn heal(&self) {
        ip(&["link", "set", &self.host_if, "up"]);
    }
}

impl Default for NetNs {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .status();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

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

/// Waits until something listens on `addr`; fails the test after `timeout`,
/// showing `what` and its log.
pub fn wait_listening(addr: &str, timeout: Duration, what: &str, log: &Path) {
    let deadline = Instant::now() + timeout;
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} did not listen on {addr} within {timeout:?}:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
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

/// A config file beside `env`'s whose `[docker] mounts` add a directory that
/// exists now, returned with it as `(directory, config)`: once a worker on
/// that config has started (its preflight passed), removing the directory
/// makes the engine refuse every container the worker asks for (a 400).
pub fn config_with_a_mount_that_vanishes(env: &TestEnv) -> (PathBuf, PathBuf) {
    let gone = env.dir.path().join("gone-after-start");
    std::fs::create_dir_all(&gone).unwrap();
    let bad_cfg = env.dir.path().join("bad.toml");
    let cfg = std::fs::read_to_string(env.config_path()).unwrap().replace(
        "target = \"/agentq-test\" }]",
        &format!(
            "target = \"/agentq-test\" }}, {{ source = \"{}\", target = \"/gone\" }}]",
            gone.display()
        ),
    );
    assert!(cfg.contains("/gone"), "{cfg}");
    std::fs::write(&bad_cfg, cfg).unwrap();
    (gone, bad_cfg)
}

/// Serves `app` on `listener` in a task until the returned sender is used or
/// dropped (the test servers: the forge simulator, the model stub).
pub fn serve_until_told(
    listener: tokio::net::TcpListener,
    app: axum::Router,
) -> tokio::sync::oneshot::Sender<()> {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await;
    });
    tx
}
