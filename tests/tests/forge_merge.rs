//! Issue 32: the simulated forge's merge, label and branch-delete answers
//! are Forgejo's (`routers/api/v1/repo/pull.go` `MergePullRequest`,
//! `label.go`, `issue_label.go`, `branch.go` `DeleteBranch`), and the
//! combined status follows `CalcCommitStatus` (the worst state wins).

use agentq_shared::forge::{
    CommitState, CreatePull, CreateStatus, ForgeClient, MergeOutcome, MergePull, MergeStyle,
    RetryPolicy,
};
use agentq_tests::{forge_sim::ForgeSim, *};

const TOKEN: &str = "merge-token-2b7d";

/// `core/demo` with `main` and a branch `work` one commit ahead, and its pull
/// request open.
async fn world() -> (GitRemotes, ForgeSim, ForgeClient, u64, String) {
    let remotes = GitRemotes::new();
    let bare = remotes.create("core", "demo", &[("README.md", "# demo\n")]);
    let sim = ForgeSim::start(TOKEN, remotes.base.path().to_path_buf()).await;
    sim.add_repo("core", "demo", "main");
    let tree = git(&bare, &["rev-parse", "main^{tree}"]);
    let sha = git(&bare, &["commit-tree", &tree, "-p", "main", "-m", "work"]);
    git(&bare, &["update-ref", "refs/heads/work", &sha]);
    let fc = ForgeClient::new(&sim.url(), Some(TOKEN.into()), RetryPolicy::no_retries()).unwrap();
    let pull = CreatePull {
        head: "work".into(),
        base: "main".into(),
        title: "Work".into(),
        body: String::new(),
    };
    let (pr, _) = fc.find_or_create_pull("core", "demo", &pull).await.unwrap();
    (remotes, sim, fc, pr.number, sha)
}

fn merge(head: &str) -> MergePull {
    MergePull {
        style: MergeStyle::Merge,
        message: String::new(),
        delete_branch_after_merge: true,
        head_commit_id: head.into(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_merge_for_a_head_that_moved_is_409_and_a_behind_head_is_405_when_blocked() {
    let (_r, sim, fc, n, sha) = world().await;
    let stale = merge("0000000000000000000000000000000000000001");
    let moved = fc.merge_pull("core", "demo", n, &stale);
    assert!(
        matches!(moved.await.unwrap(), MergeOutcome::Conflict(m) if m.contains("head out of date"))
    );
    sim.block_outdated_branches("core", "demo", true);
    sim.advance_base_on_next_merge("core", "demo", "other.txt", "x\n");
    let behind = fc
        .merge_pull("core", "demo", n, &merge(&sha))
        .await
        .unwrap();
    assert!(
        matches!(&behind, MergeOutcome::NotMergeable(m) if m.contains("behind the base")),
        "{behind:?}"
    );
    sim.block_outdated_branches("core", "demo", false);
    assert_eq!(
        fc.merge_pull("core", "demo", n, &merge(&sha))
            .await
            .unwrap(),
        MergeOutcome::Merged
    );
    // `delete_branch_after_merge`: the head branch is gone.
    assert!(!sim.branch_exists("core", "demo", "work"));
    assert!(sim.pulls("core", "demo")[0].merged);
    sim.assert_nothing_dropped();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_conflicting_head_is_not_mergeable_and_do_is_required() {
    let (_r, sim, fc, n, sha) = world().await;
    let http = reqwest::Client::new();
    let url = format!("{}/api/v1/repos/core/demo/pulls/{n}/merge", sim.url());
    let bad = http
        .post(&url)
        .header("Authorization", format!("token {TOKEN}"))
        .json(&serde_json::json!({"Do": "octopus"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 422);
    // Both sides change README.md: the checker says conflict, a 405.
    sim.advance_base_on_next_merge("core", "demo", "README.md", "theirs\n");
    let bare = _r.base.path().join("core/demo.git");
    let tree_dir = tempfile::tempdir().unwrap();
    let w = tree_dir.path();
    git(
        w,
        &[
            "clone",
            "--quiet",
            "--branch",
            "work",
            bare.to_str().unwrap(),
            ".",
        ],
    );
    std::fs::write(w.join("README.md"), "ours\n").unwrap();
    git(w, &["commit", "--quiet", "-am", "ours"]);
    git(w, &["push", "--quiet", "origin", "work"]);
    let head = git(w, &["rev-parse", "HEAD"]);
    assert_ne!(head, sha);
    let answer = fc
        .merge_pull("core", "demo", n, &merge(&head))
        .await
        .unwrap();
    assert!(
        matches!(&answer, MergeOutcome::NotMergeable(m) if m.contains("not in mergeable state")),
        "{answer:?}"
    );
    // The default branch cannot be deleted.
    let del = fc.delete_branch("core", "demo", "main").await.unwrap_err();
    assert_eq!(del.status(), Some(403), "{del}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_combined_status_is_the_worst_of_the_latest_per_context() {
    let (_r, sim, fc, _n, sha) = world().await;
    let set = |state, context: &str| CreateStatus {
        state,
        target_url: None,
        description: None,
        context: context.into(),
    };
    fc.create_status("core", "demo", &sha, &set(CommitState::Failure, "a"))
        .await
        .unwrap();
    // The latest of a context replaces the earlier one.
    fc.create_status("core", "demo", &sha, &set(CommitState::Success, "a"))
        .await
        .unwrap();
    sim.set_ci("core", "demo", "ci", "pending");
    let c = fc.combined_status("core", "demo", &sha).await.unwrap();
    assert_eq!(c.statuses.as_ref().map(Vec::len), Some(2));
    let raw: serde_json::Value = reqwest::get(format!(
        "{}/api/v1/repos/core/demo/commits/{sha}/status",
        sim.url()
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(raw["state"], "pending");
    sim.set_ci("core", "demo", "ci", "error");
    let raw: serde_json::Value = reqwest::get(format!(
        "{}/api/v1/repos/core/demo/commits/{sha}/status",
        sim.url()
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(raw["state"], "error");
}
