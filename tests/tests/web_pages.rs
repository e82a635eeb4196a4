//! Issue 15's acceptance, the web console's pages: the overview's counts and each
//! pool's waiting jobs, forge links, a trimmed log tail, a bulk confirmation, and
//! `agentq pool pause` and search as the console does them.

use agentq_shared::status::JobState;
use agentq_tests::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

mod web_common;
use web_common::*;

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_pauses_a_pool_and_searches_like_the_console() {
    let env = TestEnv::new();
    let a = enqueue(&env, "rename the widget", 41);
    let _b = enqueue(&env, "something else", 42);
    let out = env.cli_ok(&["pool", "pause", "codex", "--for", "10m"]);
    assert!(out.starts_with("pool codex paused until 20"), "{out}");
    let stats: Value = serde_json::from_str(&env.cli_ok(&["stats", "--json"])).unwrap();
    let codex = stats["pools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["pool"] == "codex")
        .unwrap()
        .clone();
    assert!(codex["paused_until"].is_string(), "{codex}");
    assert_eq!(
        env.cli_ok(&["pool", "resume", "codex"]),
        "pool codex resumed"
    );
    let out = env.cli(&["pool", "pause", "claude:opus"], None);
    assert_eq!(out.status.code(), Some(1));
    // `list --search` and the console's `q` are one filter.
    for q in ["WIDGET", "#41", &a[..10]] {
        let lines = env.cli_ok(&["list", "--search", q, "--json"]);
        let ids: Vec<String> = lines
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["id"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(ids, std::slice::from_ref(&a), "search {q}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_overview_counts_finished_jobs_and_a_job_links_to_the_forge() {
    let env = TestEnv::with_config("[forge]\nurl = \"https://bot:hunter2@forge.example/\"\n");
    let done1 = enqueue(&env, "one", 11);
    let done2 = enqueue(&env, "two", 12);
    let failed = enqueue(&env, "three", 13);
    let _queued = enqueue(&env, "four", 14);
    for id in [&done1, &done2] {
        force_state(
            &env,
            id,
            JobState::Completed,
            &[("branch", "agent/one".into())],
        )
        .await;
    }
    force_state(
        &env,
        &failed,
        JobState::Failed,
        &[("pr_url", "https://forge.example/core/demo/pulls/5".into())],
    )
    .await;
    let web = env.web(None);
    let c = http();
    let o: Value = c
        .get(format!("{}/api/overview", web.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sum = |v: &Value| {
        v.as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_u64().unwrap())
            .sum::<u64>()
    };
    for series in ["hour", "day"] {
        assert_eq!(sum(&o[series]["completed"]), 2, "{o}");
        assert_eq!(sum(&o[series]["failed"]), 1, "{o}");
        // The newest bucket holds them.
        assert_eq!(
            o[series]["completed"].as_array().unwrap().last().unwrap(),
            2
        );
    }
    let states: Vec<(String, u64)> = serde_json::from_value(o["states"].clone()).unwrap();
    assert!(states.contains(&("completed".into(), 2)) && states.contains(&("queued".into(), 1)));
    let page = page_text(&c, format!("{}/", web.url)).await;
    assert!(page.contains("completed: <strong>2</strong>"), "{page}");
    assert!(
        page.contains("failed or timed out: <strong>1</strong>"),
        "{page}"
    );

    // Links to the issue, branch, commit status and PR, without the
    // credentials written into the forge URL.
    let job = page_text(&c, format!("{}/jobs/{done1}", web.url)).await;
    assert!(
        job.contains("href=\"https://forge.example/core/demo/issues/11\""),
        "{job}"
    );
    assert!(
        job.contains("href=\"https://forge.example/core/demo/src/branch/agent/one\""),
        "{job}"
    );
    assert!(
        job.contains("href=\"https://forge.example/core/demo/commits/branch/agent/one\""),
        "{job}"
    );
    // A branch name with `#`, `?`, `%` or a space stays in its path segments.
    let odd_branch = enqueue(&env, "odd branch", 16);
    force_state(
        &env,
        &odd_branch,
        JobState::Completed,
        &[("branch", "agent/fix#1?a=b 50%".into())],
    )
    .await;
    let branch_page = page_text(&c, format!("{}/jobs/{odd_branch}", web.url)).await;
    assert!(
        branch_page.contains(
            "href=\"https://forge.example/core/demo/src/branch/agent/fix%231%3Fa=b%2050%25\""
        ) && branch_page.contains(
            "href=\"https://forge.example/core/demo/commits/branch/agent/fix%231%3Fa=b%2050%25\""
        ),
        "{branch_page}"
    );
    let job = page_text(&c, format!("{}/jobs/{failed}", web.url)).await;
    assert!(
        job.contains("href=\"https://forge.example/core/demo/pulls/5\""),
        "{job}"
    );
    // A PR URL that is not http(s) is shown as text, never as a link.
    let odd = enqueue(&env, "five", 15);
    force_state(
        &env,
        &odd,
        JobState::Failed,
        &[("pr_url", "javascript:alert(3)".into())],
    )
    .await;
    let odd = page_text(&c, format!("{}/jobs/{odd}", web.url)).await;
    assert!(
        !odd.contains("href=\"javascript:") && odd.contains("pull request: javascript:alert(3)"),
        "{odd}"
    );
    for page in [&job, &page] {
        assert!(
            !page.contains("hunter2") && !page.contains("bot:"),
            "{page}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_overview_shows_each_pools_waiting_jobs_by_reason() {
    let env = TestEnv::new();
    // No worker: every job waits in its pool's lane.
    let fresh = enqueue(&env, "fresh", 1);
    let slot = enqueue(&env, "slot", 2);
    let backoff = enqueue(&env, "backoff", 3);
    let cancelled = enqueue(&env, "cancelled", 4);
    let stale = enqueue(&env, "stale", 5);
    env.enqueue_ndjson(
        &(json!({"repo": "demo", "agent": "codex", "task": "other pool", "issue": 6}).to_string()
            + "\n"),
    );
    for (id, reason) in [(&slot, "slot"), (&backoff, "backoff")] {
        force_state(&env, id, JobState::Waiting, &[("reason", reason.into())]).await;
    }
    let store = env.store().await;
    store
        .cancel_many(std::slice::from_ref(&cancelled), &mut |_, _| {})
        .await
        .unwrap();
    // A job moved on by hand without leaving its lane: counted, as stale.
    force_state(&env, &stale, JobState::Running, &[]).await;
    let web = env.web(None);
    let c = http();
    let o: Value =
        serde_json::from_str(&page_text(&c, format!("{}/api/overview", web.url)).await).unwrap();
    let pool = |name: &str| {
        o["pools"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["pool"] == name)
            .unwrap_or_else(|| panic!("no pool {name} in {o}"))
            .clone()
    };
    let claude = pool("claude");
    let reasons: Vec<(String, u64)> =
        serde_json::from_value(claude["waiting_by_reason"].clone()).unwrap();
    assert_eq!(
        reasons,
        [
            ("queued".to_string(), 1),
            ("slot".to_string(), 1),
            ("backoff".to_string(), 1),
            ("stale".to_string(), 1),
        ],
        "{claude}"
    );
    assert_eq!(claude["waiting"], 4, "the parts add up to the pool's total");
    let codex = pool("codex");
    assert_eq!(codex["waiting"], 1);
    assert_eq!(codex["waiting_by_reason"], json!([["queued", 1]]));
    assert_eq!(pool("gemini")["waiting_by_reason"], json!([]));
    // The page shows them in each pool's row.
    let page = page_text(&c, format!("{}/", web.url)).await;
    let row = page
        .split("<tr data-pool=\"claude\">")
        .nth(1)
        .and_then(|r| r.split("</tr>").next())
        .expect("a row for claude");
    for (reason, n) in &reasons {
        assert!(
            row.contains(&format!(
                "data-reason=\"{reason}\">{reason} <strong>{n}</strong>"
            )),
            "{row}"
        );
    }
    let _ = fresh;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trimmed_log_tail_says_it_shows_only_the_end() {
    let env = TestEnv::new();
    let long = enqueue(&env, "much output", 1);
    let short = enqueue(&env, "little output", 2);
    let store = env.store().await;
    // As a worker appends: each chunk with the tail capped at LOG_TAIL_MAX.
    let max = agentq_shared::store::ops::LOG_TAIL_MAX;
    let mut pipe = redis::pipe();
    for i in 0..max + 500 {
        pipe.cmd("XADD")
            .arg(store.keys().log_tail(&long))
            .arg("MAXLEN")
            .arg("~")
            .arg(max)
            .arg("*")
            .arg("d")
            .arg(format!("chunk {i}\n"))
            .ignore();
    }
    pipe.cmd("XADD")
        .arg(store.keys().log_tail(&short))
        .arg("MAXLEN")
        .arg("~")
        .arg(max)
        .arg("*")
        .arg("d")
        .arg("all of it\n")
        .ignore();
    let _: () = pipe.query_async(&mut store.conn()).await.unwrap();
    for id in [&long, &short] {
        force_state(&env, id, JobState::Completed, &[("host", "host-a".into())]).await;
    }
    let web = env.web(None);
    let c = http();
    let page = page_text(&c, format!("{}/jobs/{long}", web.url)).await;
    let kept: u64 = redis::cmd("XLEN")
        .arg(store.keys().log_tail(&long))
        .query_async(&mut store.conn())
        .await
        .unwrap();
    let dropped = (max as u64 + 500) - kept;
    assert!(dropped > 0 && kept >= max as u64, "{kept}");
    assert!(
        page.contains(&format!(
            "Output truncated: showing the last {kept} chunks kept in Redis; the {dropped} before them"
        )) && page.contains("on host host-a"),
        "{page}"
    );
    assert!(!page.contains("chunk 0\n") && page.contains(&format!("chunk {}\n", max + 499)));
    let log: Value =
        serde_json::from_str(&page_text(&c, format!("{}/api/jobs/{long}/log", web.url)).await)
            .unwrap();
    assert_eq!(
        (log["kept"].as_u64(), log["dropped"].as_u64()),
        (Some(kept), Some(dropped))
    );
    // A whole output says nothing of the kind.
    let page = page_text(&c, format!("{}/jobs/{short}", web.url)).await;
    assert!(
        page.contains("all of it") && !page.contains("Output truncated"),
        "{page}"
    );
    let log: Value =
        serde_json::from_str(&page_text(&c, format!("{}/api/jobs/{short}/log", web.url)).await)
            .unwrap();
    assert_eq!(
        (log["kept"].as_u64(), log["dropped"].as_u64()),
        (Some(1), Some(0))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bulk_confirmation_acts_on_the_jobs_it_counted() {
    let env = TestEnv::new();
    let counted = [enqueue(&env, "one", 1), enqueue(&env, "two", 2)];
    let web = env.web(Some(TOKEN));
    let c = http();
    let r = c
        .post(format!("{}/login", web.url))
        .form(&[("token", TOKEN)])
        .send()
        .await
        .unwrap();
    let session = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    // A filter beyond the state: the page reads the records once and counts.
    let confirm = c
        .get(format!(
            "{}/jobs/bulk?op=cancel&state=queued&agent=claude",
            web.url
        ))
        .header("cookie", &session)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        confirm.contains("cancel <strong>2</strong> jobs"),
        "{confirm}"
    );
    let field = |name: &str| {
        let at = confirm
            .find(&format!("name=\"{name}\" value=\""))
            .unwrap_or_else(|| panic!("no {name} field in {confirm}"))
            + format!("name=\"{name}\" value=\"").len();
        confirm[at..].split('"').next().unwrap().to_string()
    };
    let (csrf, token) = (field("csrf"), field("confirm"));
    // Meanwhile another job matches the filter: the confirmed form leaves it.
    let later = enqueue(&env, "three", 3);
    let post = |confirm: String| {
        let c = c.clone();
        let (url, session, csrf) = (
            format!("{}/api/jobs/bulk/cancel", web.url),
            session.clone(),
            csrf.clone(),
        );
        async move {
            c.post(url)
                .header("cookie", session)
                .form(&[
                    ("csrf", csrf.as_str()),
                    ("state", "queued"),
                    ("agent", "claude"),
                    ("confirm", confirm.as_str()),
                ])
                .send()
                .await
                .unwrap()
        }
    };
    let r = post(token.clone()).await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        (v["matched"].as_u64(), v["done"].as_u64()),
        (Some(2), Some(2)),
        "{v}"
    );
    let store = env.store().await;
    for id in &counted {
        assert_eq!(
            store.get(id).await.unwrap().unwrap().state,
            JobState::Cancelled
        );
    }
    assert_eq!(
        store.get(&later).await.unwrap().unwrap().state,
        JobState::Queued
    );
    // A confirmation is good once; an unknown one is refused.
    for token in [token, "0".repeat(64)] {
        let r = post(token).await;
        assert_eq!(r.status(), StatusCode::CONFLICT);
    }
    assert_eq!(
        store.get(&later).await.unwrap().unwrap().state,
        JobState::Queued
    );
}
