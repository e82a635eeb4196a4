//! Issue 29: the forge simulator as strict as Forgejo, and what agentq does
//! when the forge is. Token scopes (the API's 403 naming the scope, git's
//! bare 403, preflight naming a missing scope, a job recording the refusal),
//! "forge down" taking git over HTTP down too, unregistered repositories,
//! `refs/pull/*` read-only and protected branches refusing a push (the job
//! ends with the push error recorded and the work kept), a hanging endpoint
//! under latency (the job records `forge_error` and finishes), and every
//! endpoint's answers checked against the OpenAPI document field by field.

use std::{path::Path, time::Duration};

use agentq_shared::{
    forge::{
        AddTime, CommitState, CreatePull, CreateStatus, ForgeClient, MergeOutcome, MergePull,
        MergeStyle, RetryPolicy,
    },
    status::{JobState, WaitReason},
};
use agentq_tests::{
    forge_sim::{spec, ForgeSim, SIM_USER},
    *,
};

const LONG: Duration = Duration::from_secs(180);
const TOKEN: &str = "strict-token-7c1e93b0";

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_retries: 1,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(50),
    }
}

/// A sim with `core/demo` (one commit on `main`) and issue 1.
async fn sim_world() -> (GitRemotes, ForgeSim, std::path::PathBuf) {
    let remotes = GitRemotes::new();
    let bare = remotes.create("core", "demo", &[("README.md", "# demo\n")]);
    let sim = ForgeSim::start(TOKEN, remotes.base.path().to_path_buf()).await;
    sim.add_repo("core", "demo", "main");
    sim.add_issue("core", "demo", 1, "Fix it", "Please.");
    (remotes, sim, bare)
}

fn client(sim: &ForgeSim, token: &str) -> ForgeClient {
    ForgeClient::new(&sim.url(), Some(token.to_string()), fast_retry()).unwrap()
}

/// Network git (the sim serves on this runtime), no credential helper, no prompt.
async fn git_net(dir: &Path, args: &[&str]) -> std::process::Output {
    tokio::process::Command::new("git")
        .args(["-c", "credential.helper=", "-c", "core.askPass="])
        .args(args)
        .current_dir(dir)
        .env("HOME", dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env_remove("GIT_ASKPASS")
        .env_remove("SSH_ASKPASS")
        .output()
        .await
        .unwrap()
}

/// `http://agentq:{token}@host/{owner}/{repo}.git`.
fn authed_url(sim: &ForgeSim, token: &str, owner: &str, repo: &str) -> String {
    sim.clone_url(owner, repo)
        .replacen("http://", &format!("http://agentq:{token}@"), 1)
}

/// An empty commit in working copy `work`.
fn commit_empty(work: &Path) {
    let id = ["-c", "user.name=t", "-c", "user.email=t@t"];
    git(
        work,
        &[&id[..], &["commit", "--allow-empty", "-q", "-m", "x"]].concat(),
    );
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_without_a_scope_gets_forgejos_403_naming_it() {
    let (_remotes, sim, _bare) = sim_world().await;
    sim.add_user_with_scopes("none", "tok-none", &[]);
    sim.add_user_with_scopes("reader", "tok-reader", &["read:issue", "read:user"]);
    sim.add_collaborator("core", "demo", "none");
    sim.add_collaborator("core", "demo", "reader");
    let none = client(&sim, "tok-none");
    let reader = client(&sim, "tok-reader");
    let refused = |e: agentq_shared::forge::ForgeError, scope: &str| {
        assert_eq!(e.status(), Some(403), "{e}");
        assert!(
            e.to_string().contains(&format!(
                "token does not have at least one of required scope(s): [{scope}]"
            )),
            "{e}"
        );
    };
    refused(none.current_user().await.unwrap_err(), "read:user");
    refused(
        none.get_issue("core", "demo", 1).await.unwrap_err(),
        "read:issue",
    );
    refused(
        none.get_repo("core", "demo").await.unwrap_err(),
        "read:repository",
    );
    refused(
        none.create_comment("core", "demo", 1, "hi")
            .await
            .unwrap_err(),
        "write:issue",
    );
    // A read scope reads; it does not write.
    assert_eq!(
        reader.get_issue("core", "demo", 1).await.unwrap().title,
        "Fix it"
    );
    refused(
        reader
            .create_comment("core", "demo", 1, "hi")
            .await
            .unwrap_err(),
        "write:issue",
    );
    let status = CreateStatus {
        state: CommitState::Pending,
        target_url: None,
        description: None,
        context: "x".into(),
    };
    refused(
        reader
            .create_status("core", "demo", "abc", &status)
            .await
            .unwrap_err(),
        "write:repository",
    );
    // The scope is checked before the repository is looked up: a repository
    // that does not exist is a 403 too, not a 404.
    refused(
        none.get_repo("core", "nowhere").await.unwrap_err(),
        "read:repository",
    );
    // No token, no scope check: a public repository reads anonymously.
    let anonymous = ForgeClient::new(&sim.url(), None, fast_retry()).unwrap();
    assert!(anonymous.get_issue("core", "demo", 1).await.is_ok());
    assert!(sim.comments("core", "demo", 1).is_empty());
    assert!(sim.statuses("core", "demo", "abc").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_scopes_are_found_without_writing_anything() {
    let (_remotes, sim, _bare) = sim_world().await;
    sim.add_user_with_scopes("some", "tok-some", &["read:user", "write:issue"]);
    sim.add_user_with_scopes("none", "tok-none", &[]);
    assert_eq!(client(&sim, TOKEN).missing_scopes().await.unwrap(), []);
    let missing = client(&sim, "tok-some").missing_scopes().await.unwrap();
    let names: Vec<&str> = missing.iter().map(|m| m.scope).collect();
    assert_eq!(names, ["write:repository"], "{missing:?}");
    assert!(
        missing[0].message.contains("[write:repository]"),
        "{missing:?}"
    );
    let missing = client(&sim, "tok-none").missing_scopes().await.unwrap();
    let names: Vec<&str> = missing.iter().map(|m| m.scope).collect();
    assert_eq!(names, ["read:user", "write:issue", "write:repository"]);
    // The probes wrote to a repository that cannot exist: nothing was stored,
    // and with the scopes held they were answered 404.
    assert!(sim.comments("core", "demo", 1).is_empty());
    let probes: Vec<u16> = sim
        .requests()
        .iter()
        .filter(|r| r.path.contains(agentq_shared::forge::PROBE_OWNER))
        .map(|r| r.status)
        .collect();
    assert_eq!(probes[..2], [404, 404], "{probes:?}");
    // A token the forge does not know is an error, not a list of scopes.
    let err = client(&sim, "tok-unknown")
        .missing_scopes()
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(401), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn git_over_http_asks_for_repository_scopes() {
    let (_remotes, sim, _bare) = sim_world().await;
    sim.set_private("core", "demo", true);
    sim.add_user_with_scopes("issues", "tok-issues", &["write:issue"]);
    sim.add_user_with_scopes("reader", "tok-reader", &["read:repository"]);
    sim.add_collaborator("core", "demo", "issues");
    sim.add_collaborator("core", "demo", "reader");
    let dir = tempfile::tempdir().unwrap();
    let url = |token: &str| authed_url(&sim, token, "core", "demo");
    let out = git_net(dir.path(), &["ls-remote", &url("tok-issues")]).await;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("403"), "{}", text(&out));
    let out = git_net(dir.path(), &["clone", "--quiet", &url("tok-reader"), "c"]).await;
    assert!(
        out.status.success(),
        "read:repository clones: {}",
        text(&out)
    );
    let work = dir.path().join("c");
    commit_empty(&work);
    let out = git_net(&work, &["push", &url("tok-reader"), "HEAD:refs/heads/side"]).await;
    assert!(
        !out.status.success(),
        "read:repository does not push: {}",
        text(&out)
    );
    assert!(text(&out).contains("403"), "{}", text(&out));
    let out = git_net(&work, &["push", &url(TOKEN), "HEAD:refs/heads/side"]).await;
    assert!(out.status.success(), "{}", text(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forge_down_takes_git_down_and_unregistered_repositories_are_404() {
    let (remotes, sim, _bare) = sim_world().await;
    let dir = tempfile::tempdir().unwrap();
    let url = authed_url(&sim, TOKEN, "core", "demo");
    sim.set_down(true);
    let out = git_net(dir.path(), &["ls-remote", &url]).await;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("503"), "{}", text(&out));
    let err = client(&sim, TOKEN)
        .get_repo("core", "demo")
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(503), "{err}");
    sim.set_down(false);
    // The API alone down: git still answers.
    sim.set_api_down(true);
    let out = git_net(dir.path(), &["ls-remote", &url]).await;
    assert!(out.status.success(), "{}", text(&out));
    sim.set_api_down(false);
    // A bare repository on disk that the forge does not have.
    remotes.create("core", "ghost", &[]);
    let ghost = authed_url(&sim, TOKEN, "core", "ghost");
    let out = git_net(dir.path(), &["ls-remote", &ghost]).await;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("Repository not found"),
        "{}",
        text(&out)
    );
    let anonymous = sim.clone_url("core", "ghost");
    let out = git_net(dir.path(), &["ls-remote", &anonymous]).await;
    assert!(!out.status.success(), "{}", text(&out));
    let err = client(&sim, TOKEN)
        .get_repo("core", "ghost")
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(404), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refs_pull_are_read_only_and_a_protected_branch_refuses_a_push() {
    let (remotes, sim, bare) = sim_world().await;
    remotes.publish_pull("core", "demo", 1);
    sim.protect_branch("core", "demo", "release/*");
    let dir = tempfile::tempdir().unwrap();
    let url = authed_url(&sim, TOKEN, "core", "demo");
    let out = git_net(dir.path(), &["clone", "--quiet", &url, "c"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let work = dir.path().join("c");
    commit_empty(&work);
    let before = git(&bare, &["for-each-ref"]);

    let out = git_net(&work, &["push", &url, "HEAD:refs/pull/1/head"]).await;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("Only AGit pull-requests can be pushed via refs/pull/1/head"),
        "{}",
        text(&out)
    );
    let out = git_net(&work, &["push", &url, "HEAD:refs/heads/release/1"]).await;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("Not allowed to push to protected branch release/1"),
        "{}",
        text(&out)
    );
    assert_eq!(
        git(&bare, &["for-each-ref"]),
        before,
        "a refused push changed a ref"
    );
    // Other branches take the push.
    let out = git_net(&work, &["push", &url, "HEAD:refs/heads/feature"]).await;
    assert!(out.status.success(), "{}", text(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_endpoint_ends_by_the_clients_deadline_and_the_rest_answer() {
    let (_remotes, sim, _bare) = sim_world().await;
    sim.set_latency(Duration::from_millis(200));
    sim.hang_on("POST", "/repos/core/demo/issues/1/comments");
    let fc =
        client(&sim, TOKEN).with_deadline(tokio::time::Instant::now() + Duration::from_secs(2));
    // Slow, but answering.
    assert_eq!(
        fc.get_issue("core", "demo", 1).await.unwrap().title,
        "Fix it"
    );
    // The hanging one ends by the deadline with a transport error.
    let err = fc
        .create_comment("core", "demo", 1, "hi")
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err}");
    sim.stop_hanging();
    assert!(client(&sim, TOKEN)
        .create_comment("core", "demo", 1, "hi")
        .await
        .is_ok());
}

/// Every endpoint agentq's client calls, answered and checked against the
/// OpenAPI document field by field; the coverage table is printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_agentq_calls_answers_as_the_document_says() {
    let (_remotes, sim, bare) = sim_world().await;
    let fc = client(&sim, TOKEN);
    let tree = git(&bare, &["rev-parse", "main^{tree}"]);
    let sha = git(&bare, &["commit-tree", &tree, "-p", "main", "-m", "work"]);
    git(&bare, &["update-ref", "refs/heads/work", &sha]);

    fc.current_user().await.unwrap();
    fc.get_repo("core", "demo").await.unwrap();
    fc.get_issue("core", "demo", 1).await.unwrap();
    let c = fc
        .upsert_comment("core", "demo", 1, "<!-- m -->", "first")
        .await
        .unwrap();
    fc.upsert_comment("core", "demo", 1, "<!-- m -->", "second")
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let resp = http
        .get(format!(
            "{}/api/v1/repos/core/demo/issues/comments/{}",
            sim.url(),
            c.id
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let time = AddTime {
        seconds: 5,
        created: chrono::Utc::now(),
    };
    fc.add_time("core", "demo", 1, &time).await.unwrap();
    fc.list_tracked_times("core", "demo", 1, Some(SIM_USER), None, None)
        .await
        .unwrap();
    fc.start_stopwatch("core", "demo", 1).await.unwrap();
    fc.stop_stopwatch("core", "demo", 1).await.unwrap();
    let pull = CreatePull {
        head: "work".into(),
        base: "main".into(),
        title: "Work".into(),
        body: "Body.".into(),
    };
    fc.find_or_create_pull("core", "demo", &pull).await.unwrap();
    fc.find_or_create_pull("core", "demo", &pull).await.unwrap();
    fc.list_open_pulls("core", "demo").await.unwrap();
    let status = CreateStatus {
        state: CommitState::Success,
        target_url: Some("http://example.invalid/job".into()),
        description: Some("QA passed".into()),
        context: "agentq/qa".into(),
    };
    fc.create_status("core", "demo", &sha, &status)
        .await
        .unwrap();
    fc.combined_status("core", "demo", &sha).await.unwrap();
    assert!(fc.commit_exists("core", "demo", &sha).await.unwrap());
    let resp = http
        .get(format!(
            "{}/api/v1/repos/core/demo/statuses/{sha}",
            sim.url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // Issue 32: after the pull request.
    let pr = fc
        .find_open_pull("core", "demo", "main", "work")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        fc.get_pull("core", "demo", pr.number)
            .await
            .unwrap()
            .head
            .sha,
        sha
    );
    let label = fc
        .ensure_label("core", "demo", "needs-review", "#e11d48", "look")
        .await
        .unwrap();
    let again = fc.ensure_label("core", "demo", "needs-review", "#e11d48", "look");
    assert_eq!(again.await.unwrap(), label);
    fc.add_labels("core", "demo", pr.number, &[label])
        .await
        .unwrap();
    let merge = MergePull {
        style: MergeStyle::Merge,
        message: "Merged.".into(),
        delete_branch_after_merge: false,
        head_commit_id: sha.clone(),
    };
    let merged = fc.merge_pull("core", "demo", pr.number, &merge);
    assert_eq!(merged.await.unwrap(), MergeOutcome::Merged);
    let twice = fc.merge_pull("core", "demo", pr.number, &merge);
    assert_eq!(twice.await.unwrap(), MergeOutcome::AlreadyMerged);
    assert!(fc.delete_branch("core", "demo", "work").await.unwrap());
    assert!(!fc.delete_branch("core", "demo", "work").await.unwrap());

    println!("{}", spec::coverage());
    let (served, violations) = sim.spec_report();
    assert!(violations.is_empty(), "{violations:#?}");
    let unserved: Vec<String> = served
        .iter()
        .filter(|(_, n)| *n == 0)
        .map(|(e, _)| format!("{} {}", e.method, e.path))
        .collect();
    assert!(unserved.is_empty(), "never answered: {unserved:?}");
    sim.assert_nothing_dropped();
}

// ---------------------------------------------------------------------------------
// End to end: the worker against the strict forge (git over HTTP from the sim).

/// A world whose forge and git remote are the sim (5 s forge budget,
/// write-backs retried every second), with `core/demo` and issue 1.
async fn worker_world() -> (TestEnv, ForgeSim) {
    require_docker();
    let env = TestEnv::with_config("auto_qa = false\n");
    env.append_config(
        "[forge]\ntoken_env = \"AGENTQ_TEST_FORGE_TOKEN\"\nmax_retries = 1\nretry_base_ms = 50\ntimeout_secs = 5\nwriteback_retry_secs = 1\n",
    );
    env.remotes.create("core", "demo", &[]);
    let sim = ForgeSim::start(TOKEN, env.remotes.base.path().to_path_buf()).await;
    sim.add_repo("core", "demo", "main");
    sim.add_issue("core", "demo", 1, "Fix it", "Please.");
    env.set_env("AGENTQ_FORGE_URL", sim.url());
    env.set_env("AGENTQ_GIT_BASE", sim.url());
    env.set_env("AGENTQ_TEST_FORGE_TOKEN", TOKEN);
    (env, sim)
}

/// Waits for job `id` to end, and checks it completed.
async fn completed(env: &TestEnv, id: &str) -> agentq_shared::record::JobRecord {
    let rec = env.wait_final(id, LONG).await;
    assert_eq!(
        rec.state,
        JobState::Completed,
        "{rec:#?}\n{}",
        env.worker_logs()
    );
    rec
}

fn bare(env: &TestEnv) -> std::path::PathBuf {
    env.remotes.base.path().join("core").join("demo.git")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_lacking_write_issue_is_named_by_preflight_and_on_the_job() {
    let (env, sim) = worker_world().await;
    sim.set_scopes(SIM_USER, &["read:user", "write:repository"]);
    let w = env.worker("w", 1);
    w.wait_log("preflight: the forge token lacks scope write:issue", LONG);
    let id = env.enqueue_for_issue(1, "@agentq-test commit");
    // The forge's refusals do not change the outcome.
    let rec = completed(&env, &id).await;
    assert!(
        rec.forge_error
            .contains("token does not have at least one of required scope(s): [write:issue]"),
        "{rec:#?}"
    );
    // What the token may do was done: the branch and its pull request.
    assert_eq!(sim.pulls("core", "demo").len(), 1, "{rec:#?}");
    assert!(sim.comments("core", "demo", 1).is_empty());
    assert!(sim.tracked_times("core", "demo", 1).is_empty());
    // A refusal is not tried again in the background.
    assert_eq!(env.store().await.writebacks_waiting().await.unwrap(), 0);
    assert_eq!(w.log_count("lacks scope write:repository"), 0);
    sim.assert_nothing_dropped();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_push_to_a_protected_branch_is_refused_and_the_work_is_kept() {
    let (env, sim) = worker_world().await;
    sim.protect_branch("core", "demo", "agent/*");
    let _w = env.worker("w", 1);
    let id = env.enqueue_for_issue(1, "@agentq-test commit");
    let rec = completed(&env, &id).await;
    assert!(
        rec.forge_error.contains("save branch")
            && rec.forge_error.contains(&format!(
                "Not allowed to push to protected branch {}",
                rec.branch
            )),
        "{rec:#?}"
    );
    // Nothing reached the remote, no pull request for a branch it does not have.
    let remote = std::process::Command::new("git")
        .args(["--git-dir"])
        .arg(bare(&env))
        .args([
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("refs/heads/{}", rec.branch),
        ])
        .output()
        .unwrap();
    assert!(!remote.status.success(), "the protected branch was created");
    assert!(sim.pulls("core", "demo").is_empty());
    // The work is kept: the agent's commit is on the branch in the worker's
    // repository of the workspace.
    let kept = git(
        &Path::new(&rec.workspace_dir).join(".meta").join("git"),
        &[
            "log",
            "-1",
            "--format=%s",
            &format!("refs/heads/{}", rec.branch),
        ],
    );
    assert_eq!(kept, "agentq test: change by codex");
    // The outcome comment says the job completed.
    let comments = sim.comments("core", "demo", 1);
    assert_eq!(comments.len(), 1);
    assert!(comments[0].body.contains("completed"), "{comments:?}");
    sim.assert_nothing_dropped();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hanging_comment_endpoint_costs_the_job_its_budget_and_the_job_finishes() {
    let (env, sim) = worker_world().await;
    sim.set_latency(Duration::from_millis(100));
    // Only the comment endpoint hangs, and it never answers while the job runs.
    sim.hang_on("POST", "/repos/core/demo/issues/1/comments");
    let _w = env.worker("w", 1);
    let id = env.enqueue_for_issue(1, "@agentq-test commit");
    let rec = completed(&env, &id).await;
    assert!(
        rec.forge_error.contains("comment on issue") && rec.forge_error.contains("budget of 5s"),
        "{rec:#?}"
    );
    // The calls before it were answered: the time and the pull request.
    assert_eq!(sim.tracked_times("core", "demo", 1).len(), 1);
    assert_eq!(sim.pulls("core", "demo").len(), 1);
    assert!(sim.comments("core", "demo", 1).is_empty());
    assert_eq!(
        sim.count_requests("POST", "/api/v1/repos/core/demo/issues/1/comments"),
        0,
        "the hanging request was never answered"
    );
    sim.assert_nothing_dropped();
}

#[tokio::test(flavor = "multi_thread")]
async fn with_the_forge_down_git_is_down_too_and_the_job_waits_for_it() {
    let (env, sim) = worker_world().await;
    sim.set_down(true);
    let _w = env.worker("w", 1);
    let id = env.enqueue_for_issue(1, "@agentq-test commit");
    // The fetch fails: an infrastructure error, tried again later.
    let waiting = env
        .wait_for(&id, LONG, |r| {
            r.state == JobState::Waiting && r.reason == Some(WaitReason::Retry)
        })
        .await;
    assert!(waiting.error.contains("503"), "{waiting:#?}");
    assert!(
        sim.requests()
            .iter()
            .any(|r| r.path.starts_with("/core/demo.git/") && r.status == 503),
        "git was not asked"
    );
    sim.set_down(false);
    let rec = completed(&env, &id).await;
    assert!(rec.attempt >= 2, "{rec:#?}");
    assert_eq!(sim.pulls("core", "demo").len(), 1);
    sim.assert_nothing_dropped();
}
