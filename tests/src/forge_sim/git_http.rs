//! Git over smart HTTP (`git http-backend`), with Forgejo's pre-receive hook.

use super::*;

/// `/{owner}/{repo}.git/{tail}` → (owner, repo, tail).
pub(super) fn parse_git_path(path: &str) -> Option<(String, String, String)> {
    let rest = path.strip_prefix('/')?;
    let (owner, rest) = rest.split_once('/')?;
    let (repo_git, tail) = rest.split_once('/')?;
    let repo = repo_git.strip_suffix(".git")?;
    let safe = |s: &str| {
        !s.is_empty()
            && !s.starts_with('.')
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    };
    let tail_ok = !tail.is_empty()
        && tail
            .split('/')
            .all(|s| !s.is_empty() && s != "." && s != "..");
    (safe(owner) && safe(repo) && tail_ok)
        .then(|| (owner.to_string(), repo.to_string(), tail.to_string()))
}

pub(super) fn git_challenge() -> Response {
    let mut resp = Response::new(Body::from("Unauthorized\n"));
    *resp.status_mut() = StatusCode::UNAUTHORIZED;
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"Gitea\""),
    );
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

pub(super) fn plain(status: StatusCode, text: impl Into<String>) -> Response {
    let mut resp = Response::new(Body::from(text.into()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// The sim's pre-receive hook: what Forgejo's pre-receive hook
/// (`routers/private/hook_pre_receive.go`, printed by `cmd/hook.go` as
/// `Forgejo: …`) refuses. `refs/pull/*` is read-only (`preReceivePull`: only
/// AGit pull requests may be pushed there), and a branch matching one of the
/// repository's protected patterns (`AGENTQ_SIM_PROTECTED`, shell globs) is
/// refused (`preReceiveBranch`: "Not allowed to push to protected branch").
/// Git then reports `[remote rejected] … (pre-receive hook declined)` and
/// changes no ref of the push.
pub(super) const PRE_RECEIVE: &str = r#"#!/bin/sh
set -f
status=0
while read -r old new ref; do
  case "$ref" in
    refs/pull/*)
      echo "Forgejo: Only AGit pull-requests can be pushed via $ref" >&2
      status=1 ;;
    refs/heads/*)
      branch=${ref#refs/heads/}
      for pattern in $AGENTQ_SIM_PROTECTED; do
        case "$branch" in
          $pattern)
            echo "Forgejo: Not allowed to push to protected branch $branch" >&2
            status=1 ;;
        esac
      done ;;
  esac
done
exit $status
"#;

pub(super) struct PushCtx {
    pub(super) owner: String,
    pub(super) repo: String,
    pub(super) user: String,
    pub(super) bare: PathBuf,
    pub(super) before: BTreeMap<String, String>,
}

pub(super) async fn git_http(
    sh: &Arc<Shared>,
    req: Request,
    owner: String,
    repo: String,
    tail: String,
) -> Response {
    let bare = sh.bare_repo(&owner, &repo);
    let query = req.uri().query().unwrap_or_default().to_string();
    let is_push = tail == "git-receive-pack"
        || (tail == "info/refs"
            && parse_query(&query)
                .get("service")
                .is_some_and(|s| s == "git-receive-pack"));
    // routers/web/repo/githttp.go (`httpBase`): only a pull from a public repository
    // that exists goes without credentials; everything else asks for them (401 with
    // a basic-auth challenge). A token must hold `read:repository` (a pull) or
    // `write:repository` (a push): else a bare 403 (`CheckRepoScopedToken`,
    // services/context/permission.go; not asked for a public pull). A repository
    // the forge does not have (not registered with `add_repo`, whatever is on
    // disk) is 404 "Repository not found" to a pull, and a push to it is refused
    // (push-to-create is off by default); so is one the user cannot read.
    if sh.lock().down {
        return plain(StatusCode::SERVICE_UNAVAILABLE, "the forge is down\n");
    }
    let (user, can_write, protected) = {
        let st = sh.lock();
        let who = match caller(&st, req.headers()) {
            Ok(who) => who,
            Err(()) => return git_challenge(),
        };
        let rs = st.repos.get(&key(&owner, &repo)).filter(|_| bare.is_dir());
        let private = rs.is_some_and(|rs| rs.private);
        let public_pull = rs.is_some() && !private && !is_push;
        if public_pull {
            (None, false, Vec::new())
        } else {
            let Some(id) = who else {
                return git_challenge();
            };
            let level = if is_push { "write" } else { "read" };
            if !st.has_scope(id, &format!("{level}:repository")) {
                return plain(StatusCode::FORBIDDEN, "Forbidden\n");
            }
            let Some(rs) = rs else {
                if is_push {
                    return plain(
                        StatusCode::FORBIDDEN,
                        "Push to create is not enabled for users.\n",
                    );
                }
                return plain(StatusCode::NOT_FOUND, "Repository not found");
            };
            if !st.can_read(rs, who) {
                return plain(StatusCode::NOT_FOUND, "Repository not found");
            }
            (
                Some(st.login(id)),
                st.can_write(rs, who),
                rs.protected.clone(),
            )
        }
    };
    if is_push && !can_write {
        // Forgejo refuses it in its pre-receive hook; the push fails either way.
        return plain(StatusCode::FORBIDDEN, "User permission denied for writing.");
    }

    let headers = req.headers().clone();
    let method = req.method().clone();
    let body = req.into_body();
    let header_str = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let mut cmd = Command::new("git");
    cmd.arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &sh.git_root)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_PROJECT_ROOT", &sh.git_root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("PATH_INFO", format!("/{owner}/{repo}.git/{tail}"))
        .env("QUERY_STRING", &query)
        .env("REQUEST_METHOD", method.as_str())
        .env(
            "CONTENT_TYPE",
            header_str("content-type").unwrap_or_default(),
        )
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("SERVER_PROTOCOL", "HTTP/1.1")
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    if let Some(len) = header_str("content-length") {
        cmd.env("CONTENT_LENGTH", len);
    }
    if let Some(enc) = header_str("content-encoding") {
        cmd.env("HTTP_CONTENT_ENCODING", enc);
    }
    if let Some(proto) = header_str("git-protocol") {
        cmd.env("GIT_PROTOCOL", proto);
    }
    // The sim's pre-receive hook refuses what Forgejo's refuses.
    cmd.env("GIT_CONFIG_KEY_0", "core.hooksPath")
        .env("GIT_CONFIG_VALUE_0", sh.hooks.path())
        .env("AGENTQ_SIM_PROTECTED", protected.join(" "));
    if let Some(user) = &user {
        cmd.env("REMOTE_USER", user)
            .env("GIT_CONFIG_COUNT", "2")
            .env("GIT_CONFIG_KEY_1", "http.receivepack")
            .env("GIT_CONFIG_VALUE_1", "true");
    } else {
        cmd.env("GIT_CONFIG_COUNT", "1");
    }
    let push = if is_push && tail == "git-receive-pack" {
        Some(PushCtx {
            owner: owner.clone(),
            repo: repo.clone(),
            user: user.clone().unwrap_or_default(),
            before: refs_of(&bare).await,
            bare: bare.clone(),
        })
    } else {
        None
    };

    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot run git http-backend: {e}\n"),
            )
        }
    };
    let mut stdin = child.stdin.take().expect("piped stdin");
    let mut body = body.into_data_stream();
    tokio::spawn(async move {
        while let Some(chunk) = body.next().await {
            match chunk {
                Ok(bytes) => {
                    if stdin.write_all(&bytes).await.is_err() {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        let _ = stdin.shutdown().await;
    });
    if let Some(mut stderr) = child.stderr.take() {
        let sh = sh.clone();
        tokio::spawn(async move {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text).await;
            if !text.trim().is_empty() {
                sh.lock().git_stderr.push(text);
            }
        });
    }
    let mut stdout = child.stdout.take().expect("piped stdout");

    // CGI headers, up to the blank line.
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let (head_end, body_start) = loop {
        if let Some(found) = find_header_end(&buf) {
            break found;
        }
        match stdout.read(&mut chunk).await {
            Ok(0) | Err(_) => {
                let _ = child.wait().await;
                return plain(
                    StatusCode::BAD_GATEWAY,
                    "git http-backend wrote no CGI headers\n",
                );
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if buf.len() > 64 * 1024 {
            return plain(
                StatusCode::BAD_GATEWAY,
                "git http-backend: CGI headers too long\n",
            );
        }
    };
    let mut status = StatusCode::OK;
    let mut headers = HeaderMap::new();
    for line in String::from_utf8_lossy(&buf[..head_end]).lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            if let Some(code) = value
                .split_whitespace()
                .next()
                .and_then(|c| c.parse::<u16>().ok())
            {
                status = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_GATEWAY);
            }
        } else if let (Ok(n), Ok(v)) = (
            header::HeaderName::from_bytes(name.trim().as_bytes()),
            HeaderValue::from_str(value),
        ) {
            headers.append(n, v);
        }
    }
    let first = buf[body_start..].to_vec();
    let tail_stream = CgiTail {
        stdout,
        child: Some(child),
        push,
        shared: sh.clone(),
        done: false,
    };
    let rest = futures::stream::unfold(tail_stream, |mut t| async move {
        if t.done {
            return None;
        }
        let mut chunk = vec![0u8; 32 * 1024];
        match t.stdout.read(&mut chunk).await {
            Ok(0) => {
                t.finish().await;
                None
            }
            Ok(n) => {
                chunk.truncate(n);
                Some((Ok::<Bytes, std::io::Error>(Bytes::from(chunk)), t))
            }
            Err(e) => {
                t.finish().await;
                t.done = true;
                Some((Err(e), t))
            }
        }
    });
    let stream =
        futures::stream::iter((!first.is_empty()).then(|| Ok(Bytes::from(first)))).chain(rest);
    let mut resp = Response::new(Body::from_stream(stream));
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    resp
}

/// The rest of a CGI answer; reaps the process and records the push at the end, so
/// a push is recorded before the client sees the end of the answer.
pub(super) struct CgiTail {
    pub(super) stdout: ChildStdout,
    pub(super) child: Option<Child>,
    pub(super) push: Option<PushCtx>,
    pub(super) shared: Arc<Shared>,
    pub(super) done: bool,
}

impl CgiTail {
    pub(super) async fn finish(&mut self) {
        let success = match self.child.take() {
            Some(mut child) => child.wait().await.is_ok_and(|s| s.success()),
            None => false,
        };
        if let Some(push) = self.push.take() {
            let after = refs_of(&push.bare).await;
            let mut updates = Vec::new();
            for (name, old) in &push.before {
                match after.get(name) {
                    Some(new) if new == old => {}
                    new => updates.push(RefUpdate {
                        name: name.clone(),
                        old: Some(old.clone()),
                        new: new.cloned(),
                    }),
                }
            }
            for (name, new) in &after {
                if !push.before.contains_key(name) {
                    updates.push(RefUpdate {
                        name: name.clone(),
                        old: None,
                        new: Some(new.clone()),
                    });
                }
            }
            self.shared.lock().pushes.push(PushRecord {
                owner: push.owner,
                repo: push.repo,
                user: push.user,
                success,
                updates,
            });
        }
    }
}

pub(super) fn find_header_end(buf: &[u8]) -> Option<(usize, usize)> {
    let crlf = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, i + 4));
    let lf = buf
        .windows(2)
        .position(|w| w == b"\n\n")
        .map(|i| (i, i + 2));
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

pub(super) async fn git_output(git_dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("--git-dir")
        .arg(git_dir)
        .args(args)
        .output()
        .await
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

pub(super) async fn resolve_branch(sh: &Shared, o: &str, r: &str, branch: &str) -> Option<String> {
    if branch.is_empty() || branch.starts_with('-') {
        return None;
    }
    let bare = sh.bare_repo(o, r);
    if !bare.is_dir() {
        return None;
    }
    git_output(
        &bare,
        &[
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("refs/heads/{branch}^{{commit}}"),
        ],
    )
    .await
    .filter(|s| !s.is_empty())
}

/// The commit `rev` names in `bare`, if any.
pub(super) async fn resolve_commit(bare: &Path, rev: &str) -> Option<String> {
    if rev.is_empty() || rev.starts_with('-') || !bare.is_dir() {
        return None;
    }
    git_output(
        bare,
        &[
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("{rev}^{{commit}}"),
        ],
    )
    .await
    .filter(|s| !s.is_empty())
}

/// The commit full ref `name` points at in `o/r`.
pub(super) async fn resolve_ref(sh: &Shared, o: &str, r: &str, name: &str) -> Option<String> {
    resolve_commit(&sh.bare_repo(o, r), name).await
}

pub(super) async fn refs_of(bare: &Path) -> BTreeMap<String, String> {
    git_output(bare, &["for-each-ref", "--format=%(refname) %(objectname)"])
        .await
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(n, s)| (n.to_string(), s.to_string()))
        .collect()
}
