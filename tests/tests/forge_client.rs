//! The Forgejo client against the simulated Forgejo: every call, retries, failures,
//! token hygiene, time tracking with parallel jobs, pull request lookup, commit
//! statuses on unknown commits, comment ownership, and git over HTTP (anonymous
//! clone of a public repository, credentials for a private one and for push).

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use agentq_shared::forge::{
    job_marker, AddTime, CommitState, CreatePull, CreateStatus, ForgeClient, ForgeError,
    IssueState, RetryPolicy, StopwatchOutcome, TimeOutcome, TrackingUnavailable,
};
use agentq_tests::{
    forge_sim::{ForgeSim, SIM_USER},
    git, GitRemotes,
};

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
    assert!(repo.id > 0);
    assert!(!repo.private);

    let issue = c.get_issue(OWNER, REPO, 7).await.unwrap();
    assert_eq!(issue.number, 7);
    assert_eq!(issue.title, "Fix the widget");
    assert_eq!(issue.body, "It wobbles.");
    assert_eq!(issue.state, IssueState::Open);
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

/// `n` seconds before now, to the second.
fn secs_ago(n: i64) -> chrono::DateTime<chrono::Utc> {
    let now = chrono::Utc::now().timestamp();
    chrono::DateTime::from_timestamp(now - n, 0).unwrap()
}

#[tokio::test]
async fn stopwatches_are_per_user_as_on_forgejo() {
    let w = World::new().await;
    w.sim.add_issue(OWNER, REPO, 8, "Second", "");
    let c = w.client();

    // Job A starts its stopwatch on #7, job B (same token) on #8.
    assert_eq!(
        c.start_stopwatch(OWNER, REPO, 7).await.unwrap(),
        StopwatchOutcome::Started
    );
    assert_eq!(
        c.start_stopwatch(OWNER, REPO, 7).await.unwrap(),
        StopwatchOutcome::AlreadyRunning
    );
    assert!(w.sim.stopwatch_running(OWNER, REPO, 7));
    assert_eq!(
        c.start_stopwatch(OWNER, REPO, 8).await.unwrap(),
        StopwatchOutcome::Started
    );
    // One stopwatch per user: B's start stopped A's and recorded it on #7.
    assert!(!w.sim.stopwatch_running(OWNER, REPO, 7));
    assert!(w.sim.stopwatch_running(OWNER, REPO, 8));
    assert_eq!(
        w.sim.stopwatch_events(OWNER, REPO, 7),
        ["start", "stopped by a start elsewhere"]
    );
    // A's stop finds nothing running: the forge's 409, which the client reports.
    assert_eq!(
        c.stop_stopwatch(OWNER, REPO, 7).await.unwrap(),
        StopwatchOutcome::NotRunning
    );
    assert_eq!(
        c.stop_stopwatch(OWNER, REPO, 8).await.unwrap(),
        StopwatchOutcome::Stopped
    );
    assert_eq!(w.sim.stopwatch_events(OWNER, REPO, 8), ["start", "stop"]);
    let calls: Vec<(String, u16)> = w
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.path.contains("/stopwatch/"))
        .map(|r| {
            (
                r.path.rsplit('/').take(3).collect::<Vec<_>>().join("<"),
                r.status,
            )
        })
        .collect();
    let want: Vec<(String, u16)> = [
        ("start<stopwatch<7", 201),
        ("start<stopwatch<7", 409),
        ("start<stopwatch<8", 201),
        ("stop<stopwatch<7", 409),
        ("stop<stopwatch<8", 201),
    ]
    .iter()
    .map(|(p, s)| (p.to_string(), *s))
    .collect();
    assert_eq!(calls, want);
    let on7 = w.sim.tracked_times(OWNER, REPO, 7);
    assert_eq!(on7.len(), 1, "{on7:?}");
    assert!(on7[0].from_stopwatch);

    // A stopwatch on a missing issue is a real error.
    let err = c.start_stopwatch(OWNER, REPO, 404).await.unwrap_err();
    assert_eq!(err.status(), Some(404), "{err:?}");
}

#[tokio::test]
async fn two_jobs_on_one_token_each_get_their_own_tracked_time() {
    let w = World::new().await;
    w.sim.add_issue(OWNER, REPO, 8, "Second", "");
    let c = w.client();

    // Two jobs run at once with one token; each adds its run when it ends.
    let job = |index: u64, started: chrono::DateTime<chrono::Utc>, seconds: u64| {
        let c = c.clone();
        async move {
            c.add_time(
                OWNER,
                REPO,
                index,
                &AddTime {
                    seconds,
                    created: started,
                },
            )
            .await
            .unwrap()
        }
    };
    let (a, b) = tokio::join!(job(7, secs_ago(40), 40), job(8, secs_ago(25), 25));
    assert!(matches!(&a, TimeOutcome::Added(t) if t.time == 40), "{a:?}");
    assert!(matches!(&b, TimeOutcome::Added(t) if t.time == 25), "{b:?}");
    let on7 = w.sim.tracked_times(OWNER, REPO, 7);
    let on8 = w.sim.tracked_times(OWNER, REPO, 8);
    assert_eq!(on7.len(), 1, "{on7:?}");
    assert_eq!(on8.len(), 1, "{on8:?}");
    assert_eq!((on7[0].seconds, on8[0].seconds), (40, 25));
    assert_eq!(on7[0].user, SIM_USER);
    assert!(!on7[0].from_stopwatch);
    if let TimeOutcome::Added(t) = &a {
        assert_eq!(t.created.timestamp(), on7[0].created_unix);
        assert_eq!(t.user_name, SIM_USER);
    }
    // No stopwatch was touched.
    assert!(w.sim.stopwatch_events(OWNER, REPO, 7).is_empty());

    // The list reads them back, filtered by user and time (inclusive bounds).
    let created = chrono::DateTime::from_timestamp(on7[0].created_unix, 0).unwrap();
    let listed = c
        .list_tracked_times(OWNER, REPO, 7, Some(SIM_USER), Some(created), Some(created))
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].time, 40);
    let later = created + chrono::Duration::seconds(1);
    assert!(c
        .list_tracked_times(OWNER, REPO, 7, None, Some(later), None)
        .await
        .unwrap()
        .is_empty());

    // Zero seconds is refused before anything is sent (the forge requires `time`).
    let err = c
        .add_time(
            OWNER,
            REPO,
            7,
            &AddTime {
                seconds: 0,
                created,
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ForgeError::InvalidArgument(_)), "{err:?}");
}

#[tokio::test]
async fn a_tracked_time_stored_before_a_failure_is_not_added_twice() {
    let w = World::new().await;
    let c = w.client();
    let times = w.api("/issues/7/times");
    // The forge stores the time, then answers 500.
    w.sim.fail_next_after_effect("POST", &times, 500, 1);
    let time = AddTime {
        seconds: 90,
        created: secs_ago(90),
    };
    let got = c.add_time(OWNER, REPO, 7, &time).await.unwrap();
    assert!(
        matches!(&got, TimeOutcome::AlreadyAdded(t) if t.time == 90),
        "{got:?}"
    );
    assert_eq!(w.sim.tracked_times(OWNER, REPO, 7).len(), 1);
    assert_eq!(w.sim.count_requests("POST", &times), 1);
    assert_eq!(w.sim.count_requests("GET", &times), 1);

    // Failing before storing: looked for, not found, sent again.
    w.sim.fail_next("POST", &times, 503, 1);
    let time = AddTime {
        seconds: 30,
        created: secs_ago(30),
    };
    let got = c.add_time(OWNER, REPO, 7, &time).await.unwrap();
    assert!(
        matches!(&got, TimeOutcome::Added(t) if t.time == 30),
        "{got:?}"
    );
    assert_eq!(w.sim.tracked_times(OWNER, REPO, 7).len(), 2);
    assert_eq!(w.sim.count_requests("POST", &times), 3);
    // The user was asked for once and remembered.
    assert_eq!(w.sim.count_requests("GET", "/api/v1/user"), 1);
}

#[tokio::test]
async fn time_tracking_off_is_an_outcome_learnt_once() {
    let w = World::new().await;
    w.sim.set_time_tracking(OWNER, REPO, false);
    let c = w.client();
    let time = AddTime {
        seconds: 5,
        created: secs_ago(5),
    };
    let times = w.api("/issues/7/times");

    let got = c.add_time(OWNER, REPO, 7, &time).await.unwrap();
    assert_eq!(
        got,
        TimeOutcome::Unavailable {
            reason: TrackingUnavailable::Disabled,
            first: true
        }
    );
    // As Forgejo's AddTime: 400 "time tracking disabled".
    let answered: Vec<u16> = w
        .sim
        .requests()
        .iter()
        .filter(|r| r.path == times)
        .map(|r| r.status)
        .collect();
    assert_eq!(answered, [400]);
    // Known now: the next job does not ask (and a clone of the client knows too).
    let again = c.clone().add_time(OWNER, REPO, 7, &time).await.unwrap();
    assert_eq!(
        again,
        TimeOutcome::Unavailable {
            reason: TrackingUnavailable::Disabled,
            first: false
        }
    );
    assert_eq!(
        c.start_stopwatch(OWNER, REPO, 7).await.unwrap(),
        StopwatchOutcome::Unavailable {
            reason: TrackingUnavailable::Disabled,
            first: false
        }
    );
    assert_eq!(w.sim.count_requests("POST", &times), 1);
    assert!(w.sim.tracked_times(OWNER, REPO, 7).is_empty());

    // The stopwatch answers a bare 403 (prepareIssueStopwatch) on a repository
    // with time tracking off.
    let fresh = w.client();
    assert_eq!(
        fresh.start_stopwatch(OWNER, REPO, 7).await.unwrap(),
        StopwatchOutcome::Unavailable {
            reason: TrackingUnavailable::Forbidden,
            first: true
        }
    );

    // A user who may not track time here (not a writer, not the poster): 403.
    w.sim.set_time_tracking(OWNER, REPO, true);
    w.sim.add_user("helper", "helper-token-77aa");
    let helper = ForgeClient::new(
        &w.sim.url(),
        Some("helper-token-77aa".into()),
        fast_retry(3),
    )
    .unwrap();
    assert_eq!(
        helper.add_time(OWNER, REPO, 7, &time).await.unwrap(),
        TimeOutcome::Unavailable {
            reason: TrackingUnavailable::Forbidden,
            first: true
        }
    );
    // The bot still can.
    assert!(matches!(
        w.client().add_time(OWNER, REPO, 7, &time).await.unwrap(),
        TimeOutcome::Added(_)
    ));
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
async fn upsert_comment_never_edits_someone_elses_marked_comment() {
    let w = World::new().await;
    w.sim.add_user("human", "human-token-1b2c");
    let marker = job_marker("01JOBA");
    // A human quotes agentq's marker first (say, replying to an older comment).
    let quoted = w.sim.add_comment_as(
        OWNER,
        REPO,
        7,
        "human",
        &format!("> earlier run\n\n{marker}\n\nPlease look again."),
    );
    let c = w.client();
    let mine = c
        .upsert_comment(OWNER, REPO, 7, &marker, "Job completed.")
        .await
        .unwrap();
    assert_ne!(mine.id, quoted);
    assert_eq!(mine.user.as_ref().map(|u| u.login.as_str()), Some(SIM_USER));
    let comments = w.sim.comments(OWNER, REPO, 7);
    assert_eq!(comments.len(), 2, "{comments:?}");
    assert_eq!(comments[0].author, "human");
    assert!(comments[0].body.ends_with("Please look again."));
    assert!(!w.sim.request_log().iter().any(|(m, _)| m == "PATCH"));
    // A second run edits agentq's own comment, still not the human's.
    c.upsert_comment(OWNER, REPO, 7, &marker, "Job failed.")
        .await
        .unwrap();
    let comments = w.sim.comments(OWNER, REPO, 7);
    assert_eq!(comments.len(), 2);
    assert!(comments[1].body.starts_with("Job failed."));
    assert!(comments[0].body.ends_with("Please look again."));

    // The forge itself refuses: editing another user's comment without write
    // access is a bare 403 (editIssueComment).
    let human =
        ForgeClient::new(&w.sim.url(), Some("human-token-1b2c".into()), fast_retry(3)).unwrap();
    let err = human
        .edit_comment(OWNER, REPO, mine.id, "hijacked")
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(403), "{err:?}");
    // With that token, upsert makes the human's own comment instead of trying.
    let theirs = human
        .upsert_comment(OWNER, REPO, 7, &job_marker("01JOBH"), "mine")
        .await
        .unwrap();
    assert_eq!(theirs.user.map(|u| u.login), Some("human".to_string()));
    assert!(w.sim.comments(OWNER, REPO, 7)[1]
        .body
        .starts_with("Job failed."));
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
    assert_eq!(pr.state, IssueState::Open);
    // Pull requests share the index space with issues (#7 exists).
    assert_eq!(pr.number, 8);
    assert_eq!(pr.html_url, format!("{}/acme/widget/pulls/8", w.sim.url()));

    w.sim.clear_request_log();
    let (again, created) = c
        .find_or_create_pull(OWNER, REPO, &pull("agentq/job-1"))
        .await
        .unwrap();
    assert!(!created);
    assert_eq!(again.number, pr.number);
    // One request: the base/head probe answered the open pull request.
    assert_eq!(
        w.sim.request_log(),
        [("GET".to_string(), w.api("/pulls/main/agentq/job-1"))]
    );
    let pulls = w.sim.pulls(OWNER, REPO);
    assert_eq!(pulls.len(), 1, "{pulls:?}");
    assert_eq!(pulls[0].head_sha, sha);
    assert_eq!(pulls[0].title, "agentq: agentq/job-1");

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
async fn pull_lookup_probes_base_and_head_and_creates_after_a_404() {
    let w = World::new().await;
    let c = w.client();
    w.branch_with_commit("agentq/deep/job-2");

    // Nothing yet: the probe's 404 means no pull request at all, so no listing.
    let (pr, created) = c
        .find_or_create_pull(OWNER, REPO, &pull("agentq/deep/job-2"))
        .await
        .unwrap();
    assert!(created);
    let calls: Vec<(String, String, u16)> = w
        .sim
        .requests()
        .into_iter()
        .map(|r| (r.method, r.path, r.status))
        .collect();
    assert_eq!(
        calls,
        [
            (
                "GET".to_string(),
                w.api("/pulls/main/agentq/deep/job-2"),
                404
            ),
            ("POST".to_string(), w.api("/pulls"), 201),
        ]
    );
    // Branch names with `/` go through the probe as path segments.
    let found = c
        .get_pull_by_base_head(OWNER, REPO, "main", "agentq/deep/job-2")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.number, pr.number);
    assert_eq!(found.head.branch(), "agentq/deep/job-2");
    assert!(c
        .get_pull_by_base_head(OWNER, REPO, "main", "agentq/other")
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn pull_lookup_matches_label_head_repository_and_base() {
    let w = World::new().await;
    let c = w.client();
    let branch = "agentq/job-1";
    w.branch_with_commit(branch);
    // A fork with a branch of the same name, and its pull request into main.
    let fork = w.remotes.create("bob", REPO, &[("README.md", "# fork\n")]);
    let tree = git(&fork, &["rev-parse", "main^{tree}"]);
    let fsha = git(
        &fork,
        &["commit-tree", &tree, "-p", "main", "-m", "bob's work"],
    );
    git(
        &fork,
        &["update-ref", &format!("refs/heads/{branch}"), &fsha],
    );
    w.sim.add_repo("bob", REPO, "main");
    let from_fork = c
        .create_pull(OWNER, REPO, &pull(&format!("bob:{branch}")))
        .await
        .unwrap();
    assert_eq!(from_fork.head.branch(), branch);
    assert_ne!(from_fork.head.repo_id, from_fork.base.repo_id);
    // The same branch into another base.
    let tree = git(&w.bare, &["rev-parse", "main^{tree}"]);
    let dsha = git(
        &w.bare,
        &["commit-tree", &tree, "-p", "main", "-m", "develop"],
    );
    git(&w.bare, &["update-ref", "refs/heads/develop", &dsha]);
    let mut to_develop = pull(branch);
    to_develop.base = "develop".into();
    let into_develop = c.create_pull(OWNER, REPO, &to_develop).await.unwrap();
    // An older pull request of ours from the branch, closed: the probe answers it.
    let old = c.create_pull(OWNER, REPO, &pull(branch)).await.unwrap();
    w.sim.close_pull(OWNER, REPO, old.number);

    // None of them is the open one from our branch into main.
    w.sim.clear_request_log();
    assert_eq!(
        c.find_open_pull(OWNER, REPO, "main", branch).await.unwrap(),
        None
    );
    let paths: Vec<String> = w.sim.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(
        paths,
        [w.api("/pulls/main/agentq/job-1"), w.api("/pulls")],
        "a closed answer to the probe falls back to the list"
    );
    let (ours, created) = c
        .find_or_create_pull(OWNER, REPO, &pull(branch))
        .await
        .unwrap();
    assert!(created);
    assert!(![from_fork.number, into_develop.number, old.number].contains(&ours.number));

    // Deleting the branch: Forgejo's head.ref becomes refs/pull/N/head; the label
    // still names the branch, and the lookup (through the list, as the probe still
    // answers the closed one) still finds it.
    git(
        &w.bare,
        &["update-ref", "-d", &format!("refs/heads/{branch}")],
    );
    let open = c.list_open_pulls(OWNER, REPO).await.unwrap();
    let listed = open.iter().find(|p| p.number == ours.number).unwrap();
    assert_eq!(
        listed.head.ref_name,
        format!("refs/pull/{}/head", ours.number)
    );
    assert_eq!(listed.head.sha, ours.head.sha);
    let found = c
        .find_open_pull(OWNER, REPO, "main", branch)
        .await
        .unwrap()
        .expect("found by label");
    assert_eq!(found.number, ours.number);
    // And the fork's pull request is found as the fork's.
    let theirs = c
        .find_open_pull(OWNER, REPO, "main", &format!("bob:{branch}"))
        .await
        .unwrap()
        .expect("the fork's");
    assert_eq!(theirs.number, from_fork.number);
}

#[tokio::test]
async fn a_pull_list_without_state_is_every_pull_request() {
    let w = World::new().await;
    let c = w.client();
    for name in ["agentq/a", "agentq/b"] {
        w.branch_with_commit(name);
    }
    let a = c.create_pull(OWNER, REPO, &pull("agentq/a")).await.unwrap();
    c.create_pull(OWNER, REPO, &pull("agentq/b")).await.unwrap();
    w.sim.close_pull(OWNER, REPO, a.number);
    let http = reqwest::Client::new();
    let count = |query: &'static str| {
        let url = format!("{}{}{query}", w.sim.url(), w.api("/pulls"));
        let http = http.clone();
        async move {
            let resp = http
                .get(url)
                .header("Authorization", format!("token {TOKEN}"))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
            resp.json::<Vec<serde_json::Value>>().await.unwrap().len()
        }
    };
    // pull_list.go filters only on `open` and `closed`.
    assert_eq!(count("").await, 2);
    assert_eq!(count("?state=all").await, 2);
    assert_eq!(count("?state=bogus").await, 2);
    assert_eq!(count("?state=open").await, 1);
    assert_eq!(count("?state=closed").await, 1);
    // The client always asks for open ones.
    assert_eq!(c.list_open_pulls(OWNER, REPO).await.unwrap().len(), 1);
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

    // A commit the repository does not have: Forgejo answers 500 (status.go) and
    // stores nothing. The client looks the commit up instead of retrying.
    let missing = "0".repeat(40);
    w.sim.clear_request_log();
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
    assert!(
        matches!(&err, ForgeError::UnknownCommit { sha, status: 500 } if *sha == missing),
        "{err:?}"
    );
    assert!(!err.is_transient());
    assert!(w.sim.statuses(OWNER, REPO, &missing).is_empty());
    let calls: Vec<(String, String, u16)> = w
        .sim
        .requests()
        .into_iter()
        .map(|r| (r.method, r.path, r.status))
        .collect();
    assert_eq!(
        calls,
        [
            (
                "POST".to_string(),
                w.api(&format!("/statuses/{missing}")),
                500
            ),
            (
                "GET".to_string(),
                w.api(&format!("/git/commits/{missing}")),
                404
            ),
        ]
    );
}

#[tokio::test]
async fn a_status_stored_before_a_500_is_not_sent_again() {
    let w = World::new().await;
    let c = w.client();
    let sha = git(&w.bare, &["rev-parse", "main"]);
    let path = w.api(&format!("/statuses/{sha}"));
    let status = CreateStatus {
        state: CommitState::Success,
        target_url: None,
        description: Some("QA passed".into()),
        context: "agentq/qa".into(),
    };
    // Stored, then a 500 (as CreateCommitStatus failing after its transaction).
    w.sim.fail_next_after_effect("POST", &path, 500, 1);
    c.create_status(OWNER, REPO, &sha, &status).await.unwrap();
    assert_eq!(w.sim.statuses(OWNER, REPO, &sha).len(), 1);
    assert_eq!(w.sim.count_requests("POST", &path), 1);
    assert_eq!(
        w.sim
            .count_requests("GET", &w.api(&format!("/commits/{sha}/status"))),
        1
    );
    let combined = c.combined_status(OWNER, REPO, &sha).await.unwrap();
    let latest = combined.statuses.unwrap();
    assert_eq!(latest.len(), 1);
    assert!(latest[0].is(&status));

    // A 503 before storing: looked up, then sent again, stored once.
    let failing = CreateStatus {
        state: CommitState::Failure,
        description: Some("QA failed".into()),
        ..status
    };
    w.sim.fail_next("POST", &path, 503, 1);
    c.create_status(OWNER, REPO, &sha, &failing).await.unwrap();
    let stored = w.sim.statuses(OWNER, REPO, &sha);
    assert_eq!(stored.len(), 2, "{stored:?}");
    assert_eq!(stored[1].state, "failure");
    assert_eq!(w.sim.count_requests("POST", &path), 3);
    // The combined status shows the latest per context; an unknown commit has none.
    let combined = c.combined_status(OWNER, REPO, "main").await.unwrap();
    assert_eq!(combined.statuses.unwrap()[0].status, "failure");
    assert!(c
        .combined_status(OWNER, REPO, &"1".repeat(40))
        .await
        .unwrap()
        .statuses
        .is_none());
    assert!(c.commit_exists(OWNER, REPO, &sha).await.unwrap());
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

    // No token at all: a public repository can be read (as on Forgejo), nothing
    // can be written (reqToken: 401), and a private one does not exist (404).
    let anonymous = ForgeClient::new(&w.sim.url(), None, fast_retry(3)).unwrap();
    assert_eq!(anonymous.get_issue(OWNER, REPO, 7).await.unwrap().number, 7);
    let err = anonymous
        .create_comment(OWNER, REPO, 7, "hi")
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(401), "{err:?}");
    let err = anonymous.current_user().await.unwrap_err();
    assert_eq!(err.status(), Some(401), "{err:?}");
    w.sim.set_private(OWNER, REPO, true);
    let err = anonymous.get_repo(OWNER, REPO).await.unwrap_err();
    assert_eq!(err.status(), Some(404), "{err:?}");
    let err = anonymous
        .create_comment(OWNER, REPO, 7, "hi")
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(404), "{err:?}");
    assert!(w.client().get_repo(OWNER, REPO).await.unwrap().private);
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
    let (status, _) = send(
        http.post(url("/pulls"))
            .header("Authorization", &auth)
            .json(&serde_json::json!({"head": "x", "base": "main", "title": "t", "draft": true})),
    )
    .await;
    // Go's JSON decoding ignores an unknown field (the sim records it); head `x`
    // does not exist: 404.
    assert_eq!(status, 404);
    assert_eq!(w.sim.unknown_fields(), ["CreatePullRequestOption.draft"]);
    let (status, _) = send(
        http.post(url("/issues/7/comments"))
            .header("Authorization", &auth)
            .header("Content-Type", "text/plain")
            .body(r#"{"body":"hi"}"#),
    )
    .await;
    assert_eq!(status, 422);
    // Auth (services/auth/oauth2.go): `token` in lowercase or `bearer` in any case;
    // another scheme is no credentials; an unknown token is a 401.
    let (status, body) = send(http.get(url("/issues/7"))).await;
    assert_eq!(
        status, 200,
        "public repositories can be read anonymously: {body}"
    );
    let (status, body) = send(
        http.post(url("/issues/7/comments"))
            .json(&serde_json::json!({"body": "hi"})),
    )
    .await;
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
    assert_eq!(status, 200, "bearer tokens are accepted");
    let (status, _) = send(
        http.post(url("/issues/7/comments"))
            .header("Authorization", format!("Token {TOKEN}"))
            .json(&serde_json::json!({"body": "hi"})),
    )
    .await;
    assert_eq!(status, 401, "`Token` is not the token scheme: anonymous");
    let (status, _) = send(
        http.get(url("/issues/7"))
            .header("Authorization", "token not-a-known-token"),
    )
    .await;
    assert_eq!(status, 401);
    let (status, body) = send(http.get(url("/milestones")).header("Authorization", &auth)).await;
    assert_eq!(status, 404);
    assert!(body["errors"].is_array(), "{body}");
    let (status, _) = send(http.delete(url("/issues/7")).header("Authorization", &auth)).await;
    assert_eq!(status, 405);
    // AddTimeOption's `time` is required: zero is a 422.
    let (status, body) = send(
        http.post(url("/issues/7/times"))
            .header("Authorization", &auth)
            .json(&serde_json::json!({"time": 0})),
    )
    .await;
    assert_eq!(status, 422, "{body}");

    // Nothing was stored by the refused requests.
    assert!(w.sim.comments(OWNER, REPO, 7).is_empty());
    assert!(w.sim.pulls(OWNER, REPO).is_empty());
    assert!(w.sim.tracked_times(OWNER, REPO, 7).is_empty());
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

/// An askpass script answering `user` and the token in `$AGENTQ_FORGE_TOKEN`.
fn askpass_script(dir: &Path, user: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(format!("askpass-{user}.sh"));
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\ncase \"$1\" in\n  Username*) echo {user} ;;\n  *) echo \"$AGENTQ_FORGE_TOKEN\" ;;\nesac\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.to_string_lossy().into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_repository_needs_credentials_to_clone_fetch_and_push() {
    let w = World::new().await;
    w.sim.set_private(OWNER, REPO, true);
    w.sim.add_user("outsider", "outsider-token-3c4d");
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let clone_url = w.sim.clone_url(OWNER, REPO);
    let bot = askpass_script(tmp.path(), "agentq-bot");
    let with_token = |token: &'static str| {
        let bot = bot.clone();
        move || {
            vec![
                ("GIT_ASKPASS", bot.clone()),
                ("AGENTQ_FORGE_TOKEN", token.to_string()),
            ]
        }
    };
    let run = |dir: PathBuf, args: Vec<String>, envs: Vec<(&'static str, String)>| {
        let home = home.clone();
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (*k, v.as_str())).collect();
            git_net(&dir, &home, &args, &envs).await
        }
    };
    let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();

    // Anonymous: the API has no such repository, git asks for credentials.
    let anonymous = ForgeClient::new(&w.sim.url(), None, fast_retry(1)).unwrap();
    let err = anonymous.get_repo(OWNER, REPO).await.unwrap_err();
    assert_eq!(err.status(), Some(404), "{err:?}");
    let out = run(
        tmp.path().to_path_buf(),
        args(&["clone", "--quiet", &clone_url, "anon"]),
        Vec::new(),
    )
    .await;
    assert!(
        !out.status.success(),
        "anonymous clone of a private repository"
    );
    let challenged = w.sim.requests().into_iter().any(|r| {
        r.path == "/acme/widget.git/info/refs"
            && r.query == "service=git-upload-pack"
            && r.status == 401
    });
    assert!(challenged, "{:#?}", w.sim.requests());
    assert!(!tmp.path().join("anon/README.md").exists());

    // A signed-in user who cannot see it: "Repository not found".
    let out = run(
        tmp.path().to_path_buf(),
        args(&["clone", "--quiet", &clone_url, "outsider"]),
        with_token("outsider-token-3c4d")(),
    )
    .await;
    assert!(
        !out.status.success(),
        "a non-member cloned a private repository"
    );
    assert!(w
        .sim
        .requests()
        .iter()
        .any(|r| r.path == "/acme/widget.git/info/refs" && r.status == 404));

    // The token: clone, commit, push, fetch.
    let out = run(
        tmp.path().to_path_buf(),
        args(&["clone", "--quiet", &clone_url, "work"]),
        with_token(TOKEN)(),
    )
    .await;
    assert!(
        out.status.success(),
        "clone with the token failed: {}\n{:?}",
        String::from_utf8_lossy(&out.stderr),
        w.sim.git_stderr()
    );
    let work = tmp.path().join("work");
    assert_eq!(
        std::fs::read_to_string(work.join("README.md")).unwrap(),
        "# widget\n"
    );
    git(&work, &["checkout", "--quiet", "-b", "agentq/private-1"]);
    std::fs::write(work.join("fix.txt"), "fixed\n").unwrap();
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "--quiet", "-m", "Fix in private"]);
    let head = git(&work, &["rev-parse", "HEAD"]);
    // Without credentials the push is refused.
    let out = run(
        work.clone(),
        args(&["push", "origin", "agentq/private-1"]),
        Vec::new(),
    )
    .await;
    assert!(!out.status.success());
    assert_eq!(branch_sha(&w.bare, "agentq/private-1"), None);
    let out = run(
        work.clone(),
        args(&["push", "origin", "agentq/private-1"]),
        with_token(TOKEN)(),
    )
    .await;
    assert!(
        out.status.success(),
        "push failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        branch_sha(&w.bare, "agentq/private-1").as_deref(),
        Some(head.as_str())
    );
    let pushes = w.sim.pushes();
    assert_eq!(pushes.len(), 1, "{pushes:?}");
    assert_eq!(pushes[0].user, SIM_USER);
    // A new commit on the forge side, fetched with the token (and not without).
    let tree = git(&w.bare, &["rev-parse", "main^{tree}"]);
    let upstream = git(
        &w.bare,
        &["commit-tree", &tree, "-p", "main", "-m", "upstream"],
    );
    git(&w.bare, &["update-ref", "refs/heads/main", &upstream]);
    let out = run(
        work.clone(),
        args(&["fetch", "--quiet", "origin"]),
        Vec::new(),
    )
    .await;
    assert!(
        !out.status.success(),
        "anonymous fetch of a private repository"
    );
    let out = run(
        work.clone(),
        args(&["fetch", "--quiet", "origin"]),
        with_token(TOKEN)(),
    )
    .await;
    assert!(
        out.status.success(),
        "fetch failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(git(&work, &["rev-parse", "origin/main"]), upstream);

    // A collaborator's token works too; the outsider's still does not push.
    let out = run(
        work.clone(),
        args(&["push", "origin", "HEAD:refs/heads/agentq/outsider"]),
        with_token("outsider-token-3c4d")(),
    )
    .await;
    assert!(!out.status.success());
    w.sim.add_collaborator(OWNER, REPO, "outsider");
    let out = run(
        tmp.path().to_path_buf(),
        args(&["clone", "--quiet", &clone_url, "collab"]),
        with_token("outsider-token-3c4d")(),
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Made public again: anonymous clone works.
    w.sim.set_private(OWNER, REPO, false);
    let out = run(
        tmp.path().to_path_buf(),
        args(&["clone", "--quiet", &clone_url, "public"]),
        Vec::new(),
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
