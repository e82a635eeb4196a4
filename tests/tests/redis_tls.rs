//! Redis beyond one box: `rediss://` (TLS, a private CA given by
//! `redis_ca_file`) with an ACL user and password, against a real redis-server
//! started with TLS only, by the CLI and a worker.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use agentq_tests::*;

const USER: &str = "agentq";
const PASSWORD: &str = "acl-pw-7c1e9b";

/// A redis-server that speaks only TLS, with the default user off and one ACL
/// user; stopped on drop.
struct TlsRedis {
    child: Child,
    port: u16,
    ca: PathBuf,
    _dir: tempfile::TempDir,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is missing: apt-get install -y openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl TlsRedis {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // A private CA, and a server certificate for 127.0.0.1 signed by it.
        openssl(
            d,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-days",
                "2",
                "-subj",
                "/CN=agentq test CA",
            ],
        );
        openssl(
            d,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=127.0.0.1",
            ],
        );
        std::fs::write(d.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "server.crt",
                "-days",
                "2",
                "-extfile",
                "san.ext",
            ],
        );
        let port = free_port();
        let child = Command::new("redis-server")
            .args(["--port", "0", "--tls-port", &port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args([
                "--tls-cert-file",
                "server.crt",
                "--tls-key-file",
                "server.key",
            ])
            .args(["--tls-ca-cert-file", "ca.crt", "--tls-auth-clients", "no"])
            .args(["--user", "default", "off"])
            .args([
                "--user",
                USER,
                "on",
                &format!(">{PASSWORD}"),
                "~*",
                "&*",
                "+@all",
            ])
            .arg("--dir")
            .arg(d)
            .current_dir(d)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start redis-server: apt-get install -y redis-server");
        let r = Self {
            child,
            port,
            ca: d.join("ca.crt"),
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server with TLS did not listen within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        r
    }

    fn url(&self, password: &str) -> String {
        format!("rediss://{USER}:{password}@127.0.0.1:{}/", self.port)
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_runs_over_tls_with_an_acl_user() {
    require_docker();
    let tls = TlsRedis::start();
    let env = TestEnv::new();
    env.remotes.create("core", "demo", &[]);
    env.set_env("AGENTQ_REDIS_URL", tls.url(PASSWORD));
    env.set_env(
        "AGENTQ_REDIS_CA_FILE",
        tls.ca.to_string_lossy().into_owned(),
    );
    let _w = env.worker("w1", 1);
    wait_live_workers(&env, 1).await;
    let out = env.cli_ok(&[
        "enqueue",
        "--repo",
        "demo",
        "--issue",
        "1",
        "--task",
        "@agentq-test commit",
        "--wait",
        "--json",
    ]);
    let rec: serde_json::Value =
        serde_json::from_str(out.lines().last().unwrap()).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(rec["state"], "completed", "{out}");
    // Nothing went to the plain Redis of the test world.
    let mut plain = env.redis.conn();
    let keys: Vec<String> = redis::Commands::keys(&mut plain, "*").unwrap();
    assert!(keys.is_empty(), "{keys:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_refusals_are_clear_and_never_show_the_password() {
    let tls = TlsRedis::start();
    let env = TestEnv::new();
    let ca = tls.ca.to_string_lossy().into_owned();
    let cases = [
        // A wrong password for the ACL user.
        (tls.url("wrong-pw-1"), Some(ca.clone()), "wrong-pw-1"),
        // The server's certificate is not signed by a trusted CA.
        (tls.url(PASSWORD), None, PASSWORD),
        // Plain text to a TLS port.
        (
            format!("redis://{USER}:{PASSWORD}@127.0.0.1:{}/", tls.port),
            None,
            PASSWORD,
        ),
    ];
    for (url, ca, secret) in cases {
        env.set_env("AGENTQ_REDIS_URL", url.clone());
        env.set_env("AGENTQ_REDIS_CA_FILE", ca.clone().unwrap_or_default());
        let out = env.cli(&["stats"], None);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{url} {ca:?}: {err}");
        assert!(err.contains("127.0.0.1"), "names the server: {err}");
        assert!(!err.contains(secret), "the password leaked: {err}");
    }
}
