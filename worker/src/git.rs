//! Git on the worker host: always as an argument vector with a timeout, never a
//! shell string, never an interactive prompt, and never on a repository the
//! agent could write (only on the worker-owned repository and on a working tree
//! the worker has just made, before any agent saw it).
//!
//! Every command also runs with configuration that cannot execute anything
//! ([`HARDENING`]), with a cleared environment (the worker's secrets are not
//! passed on), and with credentials only when the remote is the configured
//! forge ([`Credentials::for_url`]).

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use agentq_shared::config::Config;
use tokio::process::Command;

/// Longest a single git command may take.
pub const GIT_TIMEOUT: Duration = Duration::from_secs(600);

/// `-c` settings every host-side git command runs with: no hooks, no fsmonitor,
/// only the http(s) and file transports (no `ext::`, no ssh commands), no
/// redirects (credentials never follow one to another origin), no credential
/// helpers from any configuration.
pub const HARDENING: &[&str] = &[
    "core.hooksPath=/dev/null",
    "core.fsmonitor=false",
    "core.sshCommand=false",
    "protocol.allow=never",
    "protocol.https.allow=always",
    "protocol.http.allow=always",
    "protocol.file.allow=always",
    "http.followRedirects=false",
    "credential.helper=",
    "submodule.recurse=false",
];

/// Environment variables passed through to git (proxies, CA bundles, locale):
/// everything else of the worker's environment, its secrets included, is not.
const PASS_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "TMPDIR",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "GIT_SSL_CAINFO",
];

/// The askpass helper git runs for credentials. It holds no secret: it prints
/// what the worker passes in its environment for that one git process.
const ASKPASS: &str = "#!/bin/sh\ncase \"$1\" in\n  Username*) printf '%s\\n' \"$AGENTQ_GIT_USER\" ;;\n  *) printf '%s\\n' \"$AGENTQ_GIT_TOKEN\" ;;\nesac\n";

/// Credentials for the configured forge, pinned to its origin.
#[derive(Clone)]
pub struct Credentials {
    user: String,
    token: String,
    askpass: PathBuf,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("token", &"[redacted]")
            .finish()
    }
}

fn origin(u: &url::Url) -> (String, String, Option<u16>) {
    (
        u.scheme().to_string(),
        u.host_str().unwrap_or("").to_ascii_lowercase(),
        u.port_or_known_default(),
    )
}

impl Credentials {
    /// The forge's credentials if `remote` is on the configured forge's origin
    /// (same scheme, host and port) and a token is set; `None` for any other
    /// remote, so a token is never offered anywhere else.
    ///
    /// # Errors
    /// The askpass helper cannot be written.
    pub fn for_url(cfg: &Config, remote: &str) -> std::io::Result<Option<Self>> {
        let (Ok(forge), Ok(remote)) = (url::Url::parse(&cfg.forge.url), url::Url::parse(remote))
        else {
            return Ok(None);
        };
        if !matches!(forge.scheme(), "http" | "https") || origin(&forge) != origin(&remote) {
            return Ok(None);
        }
        let token = std::env::var(&cfg.forge.token_env).unwrap_or_default();
        if token.is_empty() {
            return Ok(None);
        }
        Ok(Some(Self {
            user: cfg.forge.git_user.clone(),
            token,
            askpass: askpass_helper(&cfg.workspace_root)?,
        }))
    }
}

fn askpass_helper(root: &Path) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(root)?;
    let path = root.join(".agentq-askpass");
    let current = std::fs::symlink_metadata(&path)
        .ok()
        .filter(|m| m.is_file())
        .and_then(|_| std::fs::read_to_string(&path).ok());
    if current.as_deref() != Some(ASKPASS) {
        agentq_shared::fsutil::write_atomic(&path, ASKPASS.as_bytes())?;
    }
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700))?;
    Ok(path)
}

/// Runs `git args...` in `dir` and returns its trimmed stdout.
///
/// # Errors
/// Spawn failure, timeout, or a non-zero exit (with git's stderr).
pub async fn git(dir: &Path, args: &[&str]) -> anyhow::Result<String> {
    git_with(dir, args, None).await
}

/// [`git`] for a command that talks to a remote: with `creds` (from
/// [`Credentials::for_url`]) git may authenticate, through the askpass helper;
/// the token never appears in argv, URLs, errors or logs.
///
/// # Errors
/// As [`git`].
pub async fn git_with(
    dir: &Path,
    args: &[&str],
    creds: Option<&Credentials>,
) -> anyhow::Result<String> {
    run(dir, args, creds, None).await
}

/// [`git`] with `index` as the index (`GIT_INDEX_FILE`): for building a
/// commit without touching the repository's own index.
///
/// # Errors
/// As [`git`].
pub async fn git_in_index(dir: &Path, index: &Path, args: &[&str]) -> anyhow::Result<String> {
    run(dir, args, None, Some(index)).await
}

/// `git args...` in `dir` with the hardening, only the passed-through
/// environment, no prompt for credentials and no lazy fetch; killed when
/// dropped. The one place every git the worker runs is set up.
fn hardened(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new("git");
    for c in HARDENING {
        cmd.args(["-c", c]);
    }
    cmd.args(args)
        .current_dir(dir)
        .env_clear()
        .envs(
            PASS_ENV
                .iter()
                .filter_map(|k| std::env::var(k).ok().map(|v| (*k, v))),
        )
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", "true")
        .env("GIT_NO_LAZY_FETCH", "1")
        .kill_on_drop(true);
    cmd
}

async fn run(
    dir: &Path,
    args: &[&str],
    creds: Option<&Credentials>,
    index: Option<&Path>,
) -> anyhow::Result<String> {
    let mut cmd = hardened(dir, args);
    cmd.stdin(std::process::Stdio::null());
    if let Some(index) = index {
        cmd.env("GIT_INDEX_FILE", index);
    }
    if let Some(c) = creds {
        cmd.env("GIT_ASKPASS", &c.askpass)
            .env("AGENTQ_GIT_USER", &c.user)
            .env("AGENTQ_GIT_TOKEN", &c.token);
    }
    let began = std::time::Instant::now();
    let out = tokio::time::timeout(GIT_TIMEOUT, cmd.output())
        .await
        .map_err(|_| anyhow::anyhow!("git {} timed out after {GIT_TIMEOUT:?}", args.join(" ")))?
        .map_err(|e| anyhow::anyhow!("cannot run git: {e}"))?;
    tracing::trace!(
        git = args.first().copied().unwrap_or(""),
        ms = began.elapsed().as_millis() as u64,
        "git ran"
    );
    if !out.status.success() {
        let mut stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if let Some(c) = creds {
            stderr = stderr.replace(&c.token, "[redacted]");
        }
        let stderr: String = stderr.chars().take(2000).collect();
        anyhow::bail!(
            "git {} failed ({}): {}",
            args.first().copied().unwrap_or(""),
            out.status,
            stderr
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Runs `git args...` in `dir` (hardened as [`git`]) for output the agent
/// controls: `stdin` written to it, at most `max_bytes` of its stdout kept
/// (then it is killed) and at most `within` spent. Returns the output and
/// whether it was cut.
///
/// # Errors
/// Spawn failure, timeout, or a non-zero exit of a run that was not cut.
pub async fn git_bounded(
    dir: &Path,
    args: &[&str],
    stdin: &[u8],
    max_bytes: usize,
    within: Duration,
) -> anyhow::Result<(Vec<u8>, bool)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut cmd = hardened(dir, args);
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let mut child = cmd
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot run git: {e}"))?;
    let mut input = child.stdin.take();
    let feed = stdin.to_vec();
    let writer = tokio::spawn(async move {
        if let Some(w) = input.as_mut() {
            let _ = w.write_all(&feed).await;
        }
        drop(input);
    });
    let mut out = child.stdout.take().expect("piped");
    let read = async {
        let mut buf = Vec::new();
        // On the heap: a run's future must stay small (worker stacks).
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            let n = out.read(&mut chunk).await?;
            if n == 0 {
                return Ok::<_, std::io::Error>((buf, false));
            }
            let room = max_bytes.saturating_sub(buf.len());
            buf.extend_from_slice(&chunk[..n.min(room)]);
            if n > room {
                return Ok((buf, true));
            }
        }
    };
    let (buf, cut) = tokio::time::timeout(within, read)
        .await
        .map_err(|_| anyhow::anyhow!("git {} timed out after {within:?}", args.join(" ")))?
        .map_err(|e| anyhow::anyhow!("cannot read git's output: {e}"))?;
    writer.abort();
    if cut {
        let _ = child.kill().await;
        return Ok((buf, true));
    }
    let status = tokio::time::timeout(within, child.wait())
        .await
        .map_err(|_| anyhow::anyhow!("git {} timed out after {within:?}", args.join(" ")))?
        .map_err(|e| anyhow::anyhow!("cannot run git: {e}"))?;
    if !status.success() {
        anyhow::bail!(
            "git {} failed ({status})",
            args.first().copied().unwrap_or("")
        );
    }
    Ok((buf, false))
}

/// The commit `rev` names in the repository at `dir`, if any.
pub async fn rev_parse(dir: &Path, rev: &str) -> Option<String> {
    git(
        dir,
        &[
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("{rev}^{{commit}}"),
        ],
    )
    .await
    .ok()
    .filter(|s| !s.is_empty())
}

/// Whether `ancestor` is an ancestor of (or equal to) `of`.
pub async fn is_ancestor(dir: &Path, ancestor: &str, of: &str) -> bool {
    git(dir, &["merge-base", "--is-ancestor", ancestor, of])
        .await
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(forge: &str) -> Config {
        let mut c = Config::default();
        c.forge.url = forge.into();
        c.forge.token_env = "AGENTQ_GIT_RS_TEST_TOKEN".into();
        c.workspace_root = std::env::temp_dir().join("agentq-git-rs-test");
        c
    }

    #[test]
    fn credentials_only_for_the_forge_origin() {
        std::env::set_var("AGENTQ_GIT_RS_TEST_TOKEN", "tok");
        let c = cfg("https://forge.example/");
        assert!(Credentials::for_url(&c, "https://forge.example/core/a.git")
            .unwrap()
            .is_some());
        assert!(
            Credentials::for_url(&c, "https://forge.example:443/core/a.git")
                .unwrap()
                .is_some()
        );
        for other in [
            "http://forge.example/core/a.git",
            "https://forge.example:8443/core/a.git",
            "https://evil.example/core/a.git",
            "https://forge.example.evil.example/a.git",
            "/srv/git/core/a.git",
            "ext::sh -c touch% /tmp/x",
        ] {
            assert!(
                Credentials::for_url(&c, other).unwrap().is_none(),
                "{other} got the token"
            );
        }
        let dbg = format!(
            "{:?}",
            Credentials::for_url(&c, "https://forge.example/a").unwrap()
        );
        assert!(!dbg.contains("tok\""), "{dbg}");
    }

    #[tokio::test]
    async fn hardening_ignores_a_repositorys_hooks_and_fsmonitor() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path();
        git(repo, &["init", "--quiet"]).await.unwrap();
        let marker = dir.path().join("fired");
        let hook = format!("#!/bin/sh\ntouch {}\n", marker.display());
        for h in ["post-checkout", "reference-transaction", "pre-commit"] {
            let p = repo.join(".git/hooks").join(h);
            std::fs::write(&p, &hook).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        git(
            repo,
            &[
                "config",
                "core.fsmonitor",
                &format!("touch {}", marker.display()),
            ],
        )
        .await
        .unwrap();
        std::fs::write(repo.join("f"), "x").unwrap();
        git(repo, &["add", "f"]).await.unwrap();
        git(
            repo,
            &[
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@e",
                "commit",
                "-qm",
                "m",
            ],
        )
        .await
        .unwrap();
        git(repo, &["checkout", "-q", "-b", "other"]).await.unwrap();
        git(repo, &["status"]).await.unwrap();
        assert!(!marker.exists(), "a hook or fsmonitor ran");
        // ext:: remotes are refused.
        let e = git(
            repo,
            &[
                "ls-remote",
                &format!("ext::sh -c touch% {}", marker.display()),
            ],
        )
        .await
        .unwrap_err();
        assert!(!marker.exists(), "{e}");
    }
}
