//! [`TestEnv`]: one test's world (Redis, remotes, workspace root, config).

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use crate::*;

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
    pub(crate) unset_env: std::sync::Mutex<Vec<&'static str>>,
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
        Self::with_config_and_redis(extra, Redis::start_with_password(password))
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

    /// Path of this world's config file.
    pub fn config_path(&self) -> &Path {
        &self.config_path
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

    /// The Redis key `{ns}:{suffix}`.
    pub fn key(&self, suffix: &str) -> String {
        format!("{}:{suffix}", self.ns)
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
        remove_cache_volumes(&self.workspace_root().join(".agentq-cache"));
    }
}

/// Removes the build-cache volumes a worker made for `root` (labelled
/// `agentq.cache.root`, see `worker/src/qa_cache.rs`): only this world's.
fn remove_cache_volumes(root: &Path) {
    let label = format!("label=agentq.cache.root={}", root.display());
    let Ok(out) = Command::new("docker")
        .args(["volume", "ls", "-q", "--filter", &label])
        .output()
    else {
        return;
    };
    let names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect();
    if !names.is_empty() {
        let _ = Command::new("docker")
            .args(["volume", "rm", "-f"])
            .args(&names)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

impl Default for TestEnv {
    fn default() -> Self {
        Self::new()
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
