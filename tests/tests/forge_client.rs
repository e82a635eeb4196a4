//! The Forgejo client against the simulated Forgejo: every call, retries, failures,
//! token hygiene, and git over HTTP (anonymous clone, authenticated push).

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use agentq_shared::forge::{
    job_marker, CommitState, CreatePull, CreateStatus, ForgeClient, ForgeError, RetryPolicy,
    StopwatchOutcome,
};
use agentq_tests::{forge_sim::ForgeSim, git, GitRemotes};

const TOKEN: &str = "sim-token-5f2c9a7e41d3";
const OWNER: &str = "acme";
const REPO: &str = "widget";

/// Fast retries so failure tests take milliseconds.
fn fast_retry(max_retries: u32) -> RetryPolicy {
    RetryPolicy {
        max_retries,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(50),
    }
}

/// A sim with `acme/widget` (bare repo with one commit on `main`) and issue #7.
struct World {
    sim: ForgeSim,
    remotes: GitRemotes,
    bare: PathBuf,
}

impl World {
    async fn new() -> Self {
        let remotes = GitRemotes::new();
        let bare = remotes.create(OWNER, REPO, &[("README.md", "# widget\n")]);
        let sim = ForgeSim::start(TOKEN, remotes.base.path().to_path_buf()).await;
        sim.add_repo(OWNER, REPO, "main");
        sim.add_issue(OWNER, REPO, 7, "Fix the widget", "It wobbles.");
        Self { sim, remotes, bare }
    }

    fn client(&self) -> ForgeClient {
        ForgeClient::new(&self.sim.url(), Some(TOKEN.to_string()), fast_retry(3)).unwrap()
    }

    fn api(&self, tail: &str) -> String {
        format!("/api/v1/repos/{OWNER}/{REPO}{tail}")
    }

    /// Creates branch `name` in the bare repo, one new commit on top of `main`.
    fn branch_with_commit(&self, name: &str) -> String {
        let tree = git(&self.bare, &["rev-parse", "main^{tree}"]);
        let sha = git(
            &self.bare,
            &[
                "commit-tree",
                &tree,
                "-p",
                "main",
                "-m",
                &format!("work on {name}"),
            ],
        );
        git(
            &self.bare,
            &["update-ref", &format!("refs/heads/{name}"), &sha],
        );
        sha
    }
}

fn pull(head: &str) -> CreatePull {
    CreatePull {
        head: head.to_string(),
        base: "main".to_string(),
        title: format!("agentq: {head}"),
        body: "Automated change.".to_string(),
    }
}

#[tokio::test]
async fn get_repo_and_issue() {
    let w = World::new().await;
    let c = w.client();

    let repo = c.get_repo(OWNER, REPO).await.unwrap();
    assert_eq!(repo.full_name, "acme/widget");
    assert_eq!(repo.default_branch, "main");
    assert_eq!(repo.clone_url, w.sim.clone_url(OWNER, REPO));
    assert_eq!(repo.html_url, format!("{}/acme/widget", w.sim.url()));

    let issue = c.get_issue(OWNER, REPO, 7).await.unwrap();
    assert_eq!(issue.number, 7);
    assert_eq!(issue.title, "Fix the widget");
    assert_eq!(issue.body, "It wobbles.");
    assert_eq!(issue.state, "open");
    assert_eq!(
        issue.html_url,
        format!("{}/acme/widget/issues/7", w.sim.url())
    );

    // A 404 is a client error and is not retried.
    let err = c.get_issue(OWNER, REPO, 99).await.unwrap_err();
    assert!(
        matches!(&err, ForgeError::Client { status: 404, method, path, .. }
            if method == "GET" && path == "/repos/acme/widget/issues/99"),
        "{err:?}"
    );
    assert_eq!(w.sim.count_requests("GET", &w.api("/issues/99")), 1);
    let err = c.get_repo(OWNER, "nope").await.unwrap_err();
    assert_eq!(err.status(), Some(404), "{err:?}");
}

#[tokio::test]
async fn stopwatch_start_twice_then_stop() {
    let w = World::new().await;
    let c = w.client();

    assert_eq!(
        c.start_stopwatch(OWNER, REPO, 7).await.unwrap(),
        StopwatchOutcome::Done
    );
    assert!(w.sim.stopwatch_running(OWNER, REPO, 7));
    // Already running: the forge's 409 is an outcome, not an error.
    assert_eq!(
        c.start_stopwatch(OWNER, REPO, 7).await.unwrap(),
        StopwatchOutcome::AlreadyInState
    );
    assert_eq!(
        c.stop_stopwatch(OWNER, REPO, 7).await.unwrap(),
        StopwatchOutcome::Done
    );
    assert!(!w.sim.stopwatch_running(OWNER, REPO, 7));
    assert_eq!(
        c.stop_stopwatch(OWNER, REPO, 7).await.unwrap(),
        StopwatchOutcome::AlreadyInState
    );

    assert_eq!(w.sim.stopwatch_events(OWNER, REPO, 7), ["start", "stop"]);
    let calls: Vec<(String, u16)> = w
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.path.contains("/stopwatch/"))
        .map(|r| (r.path.rsplit('/').next().unwrap().to_string(), r.status))
        .collect();
    assert_eq!(
        calls,
        [
            ("start".to_string(), 201),
            ("start".to_string(), 409),
            ("stop".to_string(), 201),
            ("stop".to_string(), 409)
        ]
    );
    assert!(w.sim.requests().iter().all(|r| r.method == "POST"));

    // A stopwatch on a missing issue is a real error.
    let err = c.start_stopwatch(OWNER, REPO, 404).await.unwrap_err();
    assert_eq!(err.status(), Some(404), "{err:?}");
}

#[tokio::test]
async fn upsert_comment_keeps_exactly_one_comment() {
    let w = World::new().await;
    let c = w.client();
    let marker = job_marker("01JOBA");

    let first = c
        .upsert_comment(OWNER, REPO, 7, &marker, "Job queued.")
        .await
        .unwrap();
    assert!(first.body.starts_with("Job queued."), "{}", first.body);
    assert!(first.body.contains(&marker));
    let again = c
        .upsert_comment(OWNER, REPO, 7, &marker, "Job queued.")
        .await
        .unwrap();
    assert_eq!(again, first);
    let comments = w.sim.comments(OWNER, REPO, 7);
    assert_eq!(comments.len(), 1, "{comments:?}");
    assert_eq!(comments[0].body, format!("Job queued.\n\n{marker}"));
    // The identical second call edited nothing.
    assert_eq!(
        w.sim.count_requests("POST", &w.api("/issues/7/comments")),
        1
    );
    assert!(!w.sim.request_log().iter().any(|(m, _)| m == "PATCH"));

    // A new body edits the same comment in place.
    let edited = c
        .upsert_comment(OWNER, REPO, 7, &marker, "Job completed: PR #8.")
        .await
        .unwrap();
    assert_eq!(edited.id, first.id);
    let comments = w.sim.comments(OWNER, REPO, 7);
    assert_eq!(comments.len(), 1);
    assert_eq!(
        comments[0].body,
        format!("Job completed: PR #8.\n\n{marker}")
    );
    assert_eq!(
        w.sim
            .count_requests("PATCH", &w.api(&format!("/issues/comments/{}", first.id))),
        1
    );

    // Another job's marker gets its own comment; plain comments are left alone.
    c.create_comment(OWNER, REPO, 7, "A human says hi.")
        .await
        .unwrap();
    c.upsert_comment(OWNER, REPO, 7, &job_marker("01JOBB"), "Second job.")
        .await
        .unwrap();
    let listed = c.list_comments(OWNER, REPO, 7).await.unwrap();
    assert_eq!(listed.len(), 3);
    assert_eq!(listed[0].id, first.id);
    assert_eq!(listed[1].body, "A human says hi.");
    assert!(listed[2].body.ends_with(&job_marker("01JOBB")));
    assert!(listed[0]
        .html_url
        .ends_with(&format!("#issuecomment-{}", first.id)));

    let err = c
        .upsert_comment(OWNER, REPO, 7, "  ", "x")
        .await
        .unwrap_err();
    assert!(matches!(err, ForgeError::InvalidArgument(_)), "{err:?}");
}

#[tokio::test]
async fn find_or_create_pull_twice_yields_one_pull_request() {
    let w = World::new().await;
    let c = w.client();
    let sha = w.branch_with_commit("agentq/job-1");

    let (pr, created) = c
        .find_or_create_pull(OWNER, REPO, &pull("agentq/job-1"))
        .await
        .unwrap();
    assert!(created);
    assert_eq!(pr.head.ref_name, "agentq/job-1");
    assert_eq!(pr.head.sha, sha);
    assert_eq!(pr.base.ref_name, "main");
    assert_eq!(pr.state, "open");
    // Pull requests share the index space with issues (#7 exists).
    assert_eq!(pr.number, 8);
    assert_eq!(pr.html_url, format!("{}/acme/widget/pulls/8", w.sim.url()));

    let (again, created) = c
        .find_or_create_pull(OWNER, REPO, &pull("agentq/job-1"))
        .await
        .unwrap();
    assert!(!created);
    assert_eq!(again.number, pr.number);
    let pulls = w.sim.pulls(OWNER, REPO);
    assert_eq!(pulls.len(), 1, "{pulls:?}");
    assert_eq!(pulls[0].head_sha, sha);
    assert_eq!(pulls[0].title, "agentq: agentq/job-1");
    assert_eq!(w.sim.count_requests("POST", &w.api("/pulls")), 1);

    // Creating the same pull request directly is the forge's 409.
    let err = c
        .create_pull(OWNER, REPO, &pull("agentq/job-1"))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(409), "{err:?}");
    // A head branch that does not exist: no pull request (404, as upstream).
    let err = c
        .find_or_create_pull(OWNER, REPO, &pull("agentq/nope"))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(404), "{err:?}");
    // Head equal to base is refused (422).
    let mut same = pull("main");
    same.base = "main".into();
    let err = c.create_pull(OWNER, REPO, &same).await.unwrap_err();
    assert_eq!(err.status(), Some(422), "{err:?}");
    assert_eq!(w.sim.pulls(OWNER, REPO).len(), 1);

    // Once closed, the next call opens a new one.
    w.sim.close_pull(OWNER, REPO, pr.number);
    let (fresh, created) = c
        .find_or_create_pull(OWNER, REPO, &pull("agentq/job-1"))
        .await
        .unwrap();
    assert!(created);
    assert_ne!(fresh.number, pr.number);
}

#[tokio::test]
async fn list_open_pulls_follows_pagination() {
    let w = World::new().await;
    let c = w.client().with_page_size(2);
    let mut numbers = Vec::new();
    for i in 1..=5 {
        let name = format!("agentq/job-{i}");
        w.branch_with_commit(&name);
        numbers.push(
            c.create_pull(OWNER, REPO, &pull(&name))
                .await
                .unwrap()
                .number,
        );
    }
    w.sim.close_pull(OWNER, REPO, numbers[1]);
    w.sim.clear_request_log();

    let mut got: Vec<u64> = c
        .list_open_pulls(OWNER, REPO)
        .await
        .unwrap()
        .iter()
        .map(|p| p.number)
        .collect();
    got.sort_unstable();
    let mut want: Vec<u64> = numbers
        .iter()
        .copied()
        .filter(|n| *n != numbers[1])
        .collect();
    want.sort_unstable();
    assert_eq!(got, want);
    let queries: Vec<String> = w.sim.requests().into_iter().map(|r| r.query).collect();
    assert_eq!(
        queries,
        ["state=open&page=1&limit=2", "state=open&page=2&limit=2"],
        "4 open pull requests in pages of 2, stopping at X-Total-Count"
    );
}

#[tokio::test]
async fn create_status_is_recorded_in_order() {
    let w = World::new().await;
    let c = w.client();
    let sha = git(&w.bare, &["rev-parse", "main"]);

    c.create_status(
        OWNER,
        REPO,
        &sha,
        &CreateStatus {
            state: CommitState::Pending,
            target_url: Some("http://agentq.local/jobs/01J".into()),
            description: Some("codex is working".into()),
            context: "agentq/codex".into(),
        },
    )
    .await
    .unwrap();
    c.create_status(
        OWNER,
        REPO,
        &sha,
        &CreateStatus {
            state: CommitState::Success,
            target_url: None,
            description: None,
            context: "agentq/codex".into(),
        },
    )
    .await
    .unwrap();

    let statuses = w.sim.statuses(OWNER, REPO, &sha);
    assert_eq!(statuses.len(), 2);
    assert_eq!(statuses[0].state, "pending");
    assert_eq!(statuses[0].target_url, "http://agentq.local/jobs/01J");
    assert_eq!(statuses[0].description, "codex is working");
    assert_eq!(statuses[0].context, "agentq/codex");
    assert_eq!(statuses[1].state, "success");
    assert_eq!(statuses[1].target_url, "");
    assert_eq!(
        w.sim
            .count_requests("POST", &w.api(&format!("/statuses/{sha}"))),
        2
    );

    // A commit the repository does not have is a 404.
    let missing = "0".repeat(40);
    let err = c
        .create_status(
            OWNER,
            REPO,
            &missing,
            &CreateStatus {
                state: CommitState::Failure,
                target_url: None,
                description: None,
                context: "agentq/codex".into(),
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(404), "{err:?}");
    assert!(w.sim.statuses(OWNER, REPO, &missing).is_empty());
}

#[tokio::test]
async fn transient_503s_are_retried_until_success() {
    let w = World::new().await;
    let c = w.client();
    w.sim
        .fail_next("GET", "/repos/acme/widget/issues/7", 503, 2);

    let issue = c.get_issue(OWNER, REPO, 7).await.unwrap();
    assert_eq!(issue.number, 7);
    let statuses: Vec<u16> = w
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path == w.api("/issues/7"))
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, [503, 503, 200]);
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let w = World::new().await;
    let c = ForgeClient::new(
        &w.sim.url(),
        Some(TOKEN.to_string()),
        RetryPolicy {
            max_retries: 2,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_secs(10),
        },
    )
    .unwrap();
    w.sim
        .fail_next_with_retry_after("GET", "/repos/acme/widget", 429, 1, 1);
    let started = Instant::now();
    let repo = c.get_repo(OWNER, REPO).await.unwrap();
    assert_eq!(repo.name, REPO);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(950),
        "Retry-After: 1 should delay the retry by a second, waited {waited:?}"
    );
    assert_eq!(w.sim.count_requests("GET", &w.api("")), 2);
}

#[tokio::test]
async fn forge_down_fails_after_the_retries() {
    let w = World::new().await;
    let c = w.client(); // 3 retries
    w.sim.set_down(true);

    let err = c.get_issue(OWNER, REPO, 7).await.unwrap_err();
    match &err {
        ForgeError::Server {
            status,
            attempts,
            path,
            ..
        } => {
            assert_eq!(*status, 503);
            assert_eq!(*attempts, 4);
            assert_eq!(path, "/repos/acme/widget/issues/7");
        }
        other => panic!("expected a server error, got {other:?}"),
    }
    assert!(err.is_transient());
    assert_eq!(w.sim.count_requests("GET", &w.api("/issues/7")), 4);

    // Writes give up the same way.
    let err = c.start_stopwatch(OWNER, REPO, 7).await.unwrap_err();
    assert!(
        matches!(err, ForgeError::Server { status: 503, .. }),
        "{err:?}"
    );

    w.sim.set_down(false);
    assert_eq!(c.get_issue(OWNER, REPO, 7).await.unwrap().number, 7);
}

#[tokio::test]
async fn unreachable_forge_is_a_transport_error() {
    let url = format!("http://127.0.0.1:{}", agentq_tests::free_port());
    let c = ForgeClient::new(&url, Some(TOKEN.to_string()), fast_retry(2)).unwrap();
    let err = c.get_issue(OWNER, REPO, 7).await.unwrap_err();
    assert!(matches!(err, ForgeError::Transport(_)), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("3 attempts"), "{text}");
    assert!(!text.contains(TOKEN), "{text}");
    assert!(!format!("{err:?}").contains(TOKEN));
}

#[tokio::test]
async fn wrong_token_is_a_401_that_never_shows_the_token() {
    let w = World::new().await;
    let wrong = "wrong-token-9d8e7f6a5b4c";
    let c = ForgeClient::new(&w.sim.url(), Some(wrong.to_string()), fast_retry(3)).unwrap();

    let err = c.get_issue(OWNER, REPO, 7).await.unwrap_err();
    assert!(
        matches!(err, ForgeError::Client { status: 401, .. }),
        "{err:?}"
    );
    for shown in [err.to_string(), format!("{err:?}"), format!("{c:?}")] {
        assert!(!shown.contains(wrong), "{shown}");
        assert!(!shown.contains(TOKEN), "{shown}");
    }
    // Not retried.
    assert_eq!(w.sim.count_requests("GET", &w.api("/issues/7")), 1);

    // No token at all is refused the same way.
    let anonymous = ForgeClient::new(&w.sim.url(), None, fast_retry(3)).unwrap();
    let err = anonymous.get_repo(OWNER, REPO).await.unwrap_err();
    assert_eq!(err.status(), Some(401), "{err:?}");
}

#[tokio::test]
async fn sim_checks_requests_against_the_spec() {
    let w = World::new().await;
    let http = reqwest::Client::new();
    let url = |tail: &str| format!("{}{}", w.sim.url(), w.api(tail));
    let auth = format!("token {TOKEN}");

    let send = |req: reqwest::RequestBuilder| async move {
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let body: serde_json::Value = resp.json().await.unwrap_or(serde_json::Value::Null);
        (status, body)
    };

    // Missing or malformed bodies: 422 naming the field.
    let (status, body) = send(
        http.post(url("/issues/7/comments"))
            .header("Authorization", &auth)
            .json(&serde_json::json!({})),
    )
    .await;
    assert_eq!(status, 422);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("`body` is required"),
        "{body}"
    );
    let (status, _) = send(
        http.post(url("/issues/7/comments"))
            .header("Authorization", &auth)
            .json(&serde_json::json!({"body": 42})),
    )
    .await;
    assert_eq!(status, 422);
    let (status, body) = send(
        http.post(url("/pulls"))
            .header("Authorization", &auth)
            .json(&serde_json::json!({"head": "x", "base": "main", "title": "t", "draft": true})),
    )
    .await;
    assert_eq!(status, 422);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("unknown field `draft`"),
        "{body}"
    );
    let (status, _) = send(
        http.post(url("/issues/7/comments"))
            .header("Authorization", &auth)
            .header("Content-Type", "text/plain")
            .body(r#"{"body":"hi"}"#),
    )
    .await;
    assert_eq!(status, 422);
    // Invalid commit state: the spec's 400.
    let sha = git(&w.bare, &["rev-parse", "main"]);
    let (status, _) = send(
        http.post(url(&format!("/statuses/{sha}")))
            .header("Authorization", &auth)
            .json(&serde_json::json!({"state": "great", "context": "c"})),
    )
    .await;
    assert_eq!(status, 400);

    // Auth, routes, methods.
    let (status, body) = send(http.get(url("/issues/7"))).await;
    assert_eq!(status, 401);
    assert!(
        body["message"].is_string() && body["url"].is_string(),
        "{body}"
    );
    let (status, _) = send(
        http.get(url("/issues/7"))
            .header("Authorization", format!("Bearer {TOKEN}")),
    )
    .await;
    assert_eq!(status, 401, "only `token <TOKEN>` is accepted");
    let (status, body) = send(http.get(url("/labels")).header("Authorization", &auth)).await;
    assert_eq!(status, 404);
    assert!(body["errors"].is_array(), "{body}");
    let (status, _) = send(http.delete(url("/issues/7")).header("Authorization", &auth)).await;
    assert_eq!(status, 405);

    // Nothing was stored by the refused requests.
    assert!(w.sim.comments(OWNER, REPO, 7).is_empty());
    assert!(w.sim.pulls(OWNER, REPO).is_empty());
}

/// Runs network git asynchronously (the sim serves on this runtime).
async fn git_net(
    dir: &Path,
    home: &Path,
    args: &[&str],
    envs: &[(&str, &str)],
) -> std::process::Output {
    let mut cmd = tokio::process::Command::new("git");
    cmd.args(["-c", "credential.helper=", "-c", "core.askPass="])
        .args(args)
        .current_dir(dir)
        .env("HOME", home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env_remove("GIT_ASKPASS")
        .env_remove("SSH_ASKPASS");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().await.unwrap()
}

fn branch_sha(bare: &Path, branch: &str) -> Option<String> {
    let out = std::process::Command::new("git")
        .arg("--git-dir")
        .arg(bare)
        .args([
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("refs/heads/{branch}"),
        ])
        .output()
        .unwrap();
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn git_clone_is_anonymous_and_push_needs_the_token() {
    use std::os::unix::fs::PermissionsExt;

    let w = World::new().await;
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let clone_url = w.sim.clone_url(OWNER, REPO);

    // Anonymous clone.
    let out = git_net(
        tmp.path(),
        &home,
        &["clone", "--quiet", &clone_url, "work"],
        &[],
    )
    .await;
    assert!(
        out.status.success(),
        "clone failed: {}\n{:?}",
        String::from_utf8_lossy(&out.stderr),
        w.sim.git_stderr()
    );
    let work = tmp.path().join("work");
    assert_eq!(
        std::fs::read_to_string(work.join("README.md")).unwrap(),
        "# widget\n"
    );

    // A commit on a new branch.
    git(&work, &["checkout", "--quiet", "-b", "agentq/job-1"]);
    std::fs::write(work.join("fix.txt"), "fixed\n").unwrap();
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "--quiet", "-m", "Fix the widget"]);
    let head = git(&work, &["rev-parse", "HEAD"]);

    // Push without credentials: refused with a basic-auth challenge.
    let out = git_net(&work, &home, &["push", "origin", "agentq/job-1"], &[]).await;
    assert!(!out.status.success(), "push without credentials succeeded");
    let challenged = w.sim.requests().into_iter().any(|r| {
        r.path == "/acme/widget.git/info/refs"
            && r.query == "service=git-receive-pack"
            && r.status == 401
    });
    assert!(challenged, "{:#?}", w.sim.requests());
    assert_eq!(branch_sha(&w.bare, "agentq/job-1"), None);
    assert!(w.sim.pushes().is_empty());

    // The token as password, handed over by GIT_ASKPASS (never in the URL).
    let askpass = tmp.path().join("askpass.sh");
    std::fs::write(
        &askpass,
        "#!/bin/sh\ncase \"$1\" in\n  Username*) echo agentq-bot ;;\n  *) echo \"$AGENTQ_FORGE_TOKEN\" ;;\nesac\n",
    )
    .unwrap();
    std::fs::set_permissions(&askpass, std::fs::Permissions::from_mode(0o755)).unwrap();
    let askpass = askpass.to_str().unwrap();

    // A wrong token is refused too.
    let out = git_net(
        &work,
        &home,
        &["push", "origin", "agentq/job-1"],
        &[
            ("GIT_ASKPASS", askpass),
            ("AGENTQ_FORGE_TOKEN", "not-the-token"),
        ],
    )
    .await;
    assert!(!out.status.success(), "push with a wrong token succeeded");
    assert_eq!(branch_sha(&w.bare, "agentq/job-1"), None);

    let out = git_net(
        &work,
        &home,
        &["push", "origin", "agentq/job-1"],
        &[("GIT_ASKPASS", askpass), ("AGENTQ_FORGE_TOKEN", TOKEN)],
    )
    .await;
    assert!(
        out.status.success(),
        "push failed: {}\n{:?}",
        String::from_utf8_lossy(&out.stderr),
        w.sim.git_stderr()
    );
    assert_eq!(
        branch_sha(&w.bare, "agentq/job-1").as_deref(),
        Some(head.as_str())
    );
    let pushes = w.sim.pushes();
    assert_eq!(pushes.len(), 1, "{pushes:?}");
    assert_eq!(pushes[0].user, "agentq-bot");
    assert!(pushes[0].success);
    assert_eq!(pushes[0].updates.len(), 1, "{pushes:?}");
    assert_eq!(pushes[0].updates[0].name, "refs/heads/agentq/job-1");
    assert_eq!(pushes[0].updates[0].old, None);
    assert_eq!(pushes[0].updates[0].new.as_deref(), Some(head.as_str()));

    // The pushed branch becomes a pull request at the pushed commit.
    let c = w.client();
    let (pr, created) = c
        .find_or_create_pull(OWNER, REPO, &pull("agentq/job-1"))
        .await
        .unwrap();
    assert!(created);
    assert_eq!(pr.head.sha, head);

    // A fresh anonymous clone sees the pushed branch.
    let out = git_net(
        tmp.path(),
        &home,
        &[
            "clone",
            "--quiet",
            "--branch",
            "agentq/job-1",
            &clone_url,
            "again",
        ],
        &[],
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("again/fix.txt")).unwrap(),
        "fixed\n"
    );
    // The remotes directory is the sim's git root.
    assert!(w.remotes.base.path().join("acme/widget.git").is_dir());
}
