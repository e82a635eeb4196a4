//! Issue 15's acceptance, the web console in a real headless Chromium driven over
//! WebDriver (chromedriver) against a real worker, Redis and Docker.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use agentq_shared::status::JobState;
use agentq_tests::*;
use serde_json::{json, Value};

mod web_common;
use web_common::*;

/// A chromedriver on a free port, killed on drop.
struct Driver {
    child: Child,
    port: u16,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts chromedriver; fails loudly when Chromium or its driver is missing.
fn chromedriver(log: PathBuf) -> Driver {
    for bin in ["chromium", "chromedriver"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {bin}")])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        assert!(
            found,
            "{bin} is missing: this test drives a real browser; install it with `apt-get install -y chromium chromium-driver` (scripts/test does, as root)"
        );
    }
    let port = free_port();
    let file = std::fs::File::create(&log).unwrap();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .stdin(Stdio::null())
        .spawn()
        .expect("cannot start chromedriver");
    wait_listening(
        &format!("127.0.0.1:{port}"),
        Duration::from_secs(30),
        "chromedriver",
        &log,
    );
    Driver { child, port }
}

async fn browser(driver: &Driver) -> fantoccini::Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({"args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1100,1200"]}),
    );
    fantoccini::ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("cannot start a Chromium session through chromedriver")
}

/// Polls `css`'s text every 200 ms until `pred` holds; fails after `timeout`.
async fn wait_text(
    b: &fantoccini::Client,
    css: &str,
    timeout: Duration,
    what: &str,
    pred: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    loop {
        if let Ok(el) = b.find(fantoccini::Locator::Css(css)).await {
            if let Ok(t) = el.text().await {
                if pred(&t) {
                    return t;
                }
                last = t;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{what}: `{css}` never matched within {timeout:?}; last text: {last:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Clicks `css`; finds it again if the page swapped it out meanwhile (the
/// overview refreshes its sections in place).
async fn click(b: &fantoccini::Client, css: &str) {
    let url = b
        .current_url()
        .await
        .map(|u| u.to_string())
        .unwrap_or_default();
    for tries in 1.. {
        let el = b
            .find(fantoccini::Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no `{css}` on {url}: {e}"));
        match el.click().await {
            Ok(()) => return,
            Err(e) if tries < 5 && e.to_string().contains("stale") => continue,
            Err(e) => panic!("cannot click `{css}` on {url}: {e}"),
        }
    }
}

fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    let dir = target.join("web-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread")]
async fn a_browser_watches_answers_retries_and_pauses_against_a_real_worker() {
    require_docker();
    let env = TestEnv::new();
    env.remotes.create("core", "demo", &[]);
    let web = env.web(Some(TOKEN));
    let driver = chromedriver(env.dir.path().join("logs").join("chromedriver.log"));
    let b = browser(&driver).await;
    let result = drive(&env, &web, &b).await;
    let _ = b.close().await;
    result.unwrap();
}

async fn drive(
    env: &TestEnv,
    web: &WebProc,
    b: &fantoccini::Client,
) -> Result<(), fantoccini::error::CmdError> {
    let store = env.store().await;
    let u = |p: &str| format!("{}{p}", web.url);

    // Log in with the operator token.
    b.goto(&u("/login")).await?;
    b.find(fantoccini::Locator::Css("#token"))
        .await?
        .send_keys(TOKEN)
        .await?;
    click(b, "#login-submit").await;
    wait_text(b, "#logout", LONG, "logged in", |t| t.contains("Log out")).await;

    // A job, watched on its page from queued (no worker yet) to completed,
    // its output appearing live: the agent holds until the page has shown
    // it, so the page cannot have read a finished job.
    let id = enqueue(
        env,
        "@agentq-test print live-line-4711 @agentq-test hold",
        1,
    );
    b.goto(&u(&format!("/jobs/{id}"))).await?;
    wait_text(b, "#job-state", LONG, "queued before any worker", |t| {
        t == "queued"
    })
    .await;
    let _w = env.worker("w1", 2);
    wait_text(b, "#job-state", LONG, "running, live", |t| t == "running").await;
    wait_text(b, "#log", LONG, "live output", |t| {
        t.contains("live-line-4711")
    })
    .await;
    assert_eq!(
        store.get(&id).await.unwrap().unwrap().state,
        JobState::Running,
        "the output came while the job ran"
    );
    assert!(env.agent_runs(&id).is_empty(), "the agent has not ended");
    env.release_holds();
    wait_text(b, "#job-state", LONG, "completed, live", |t| {
        t == "completed"
    })
    .await;
    assert_eq!(
        store.get(&id).await.unwrap().unwrap().state,
        JobState::Completed
    );
    // The output as it came live is the output as the page shows it after,
    // newline for newline (none doubled).
    wait_text(b, "#log-status", LONG, "the stream's end", |t| {
        t.contains("finished")
    })
    .await;
    let live: Value = b
        .execute("return document.getElementById('log').textContent;", vec![])
        .await?;
    b.goto(&u("/")).await?;
    b.goto(&u(&format!("/jobs/{id}"))).await?;
    let after: Value = b
        .execute("return document.getElementById('log').textContent;", vec![])
        .await?;
    assert_eq!(live, after);
    wait_text(b, "#history", LONG, "the timeline", |t| {
        t.contains("running") && t.contains("completed")
    })
    .await;
    wait_text(b, "#log", LONG, "the whole output after", |t| {
        t.contains("live-line-4711")
    })
    .await;
    b.execute("window.scrollTo(0, 0);", vec![]).await?;
    std::fs::write(screenshot_dir().join("job.png"), b.screenshot().await?).unwrap();

    // A blocked job answered from its page, then completing.
    let blocked = enqueue(
        env,
        "@agentq-test block-unless /agentq/ANSWER.md \"Which colour, red or blue?\"",
        2,
    );
    let rec = env.wait_final(&blocked, LONG).await;
    assert_eq!(rec.state, JobState::Blocked);
    b.goto(&u(&format!("/jobs/{blocked}"))).await?;
    wait_text(b, "#question", LONG, "the question", |t| {
        t.contains("Which colour")
    })
    .await;
    b.find(fantoccini::Locator::Css("#answer"))
        .await?
        .send_keys("blue")
        .await?;
    click(b, "#answer-submit").await;
    wait_text(b, "#job-state", LONG, "answered job completes", |t| {
        t == "completed"
    })
    .await;
    let rec = store.get(&blocked).await.unwrap().unwrap();
    assert_eq!(
        (rec.state, rec.answer.as_str()),
        (JobState::Completed, "blue")
    );

    // A failed job retried from its page: a second attempt runs.
    // (On codex: three fast failures would pause claude, paused by hand below.)
    let failing = env.enqueue(&[
        "--repo",
        "demo",
        "--agent",
        "codex",
        "--task",
        "@agentq-test exit 3",
        "--issue",
        "3",
    ]);
    let rec = env.wait_final(&failing, LONG).await;
    assert_eq!(rec.state, JobState::Failed);
    b.goto(&u(&format!("/jobs/{failing}"))).await?;
    click(b, "#retry").await;
    env.wait_for(&failing, LONG, |r| r.attempt >= 2 && r.state.is_final())
        .await;
    b.refresh().await?;
    wait_text(b, "#history", LONG, "two attempts in the timeline", |t| {
        t.matches("failed").count() >= 2
    })
    .await;

    // Bulk retry of the failed jobs, after a page that says how many.
    b.goto(&u("/jobs?state=failed")).await?;
    click(b, "#bulk-retry").await;
    wait_text(b, "#bulk-count", LONG, "the count", |t| {
        t.contains("retry 1 jobs")
    })
    .await;
    click(b, "#bulk-confirm").await;
    env.wait_for(&failing, LONG, |r| r.attempt >= 3 && r.state.is_final())
        .await;

    // Pause the claude pool from the overview (confirming), see a job wait,
    // resume it, see the job run.
    b.goto(&u("/")).await?;
    click(b, "tr[data-pool=claude] button.pause-pool").await;
    b.accept_alert().await?;
    wait_text(b, "tr[data-pool=claude] td.paused", LONG, "paused", |t| {
        t.starts_with("20")
    })
    .await;
    let stats = store
        .pool_stats(&Default::default(), &["claude".to_string()])
        .await
        .unwrap();
    assert!(stats[0].paused_until.is_some());
    let held = enqueue(env, "@agentq-test print after-resume", 4);
    b.refresh().await?;
    wait_text(
        b,
        "tr[data-pool=claude] td:nth-child(3)",
        LONG,
        "the job waits",
        |t| t == "1",
    )
    .await;
    // An idle live worker would have started it by now were the pool not paused.
    assert_eq!(
        store.get(&held).await.unwrap().unwrap().state,
        JobState::Queued
    );
    click(b, "tr[data-pool=claude] button.resume-pool").await;
    wait_text(b, "tr[data-pool=claude] td.paused", LONG, "resumed", |t| {
        t == "-"
    })
    .await;
    let rec = env.wait_final(&held, LONG).await;
    assert_eq!(rec.state, JobState::Completed);
    // The overview, not reloaded, catches up by itself.
    let completed = store
        .state_counts()
        .await
        .unwrap()
        .into_iter()
        .find(|(s, _)| *s == JobState::Completed)
        .unwrap()
        .1;
    wait_text(b, "#states", LONG, "the overview refreshing itself", |t| {
        t.contains(&format!("completed {completed}"))
    })
    .await;

    // Requests without the token, from the page itself: refused; with the
    // session cookie but no CSRF token: refused too.
    let status = |creds: &'static str| {
        format!(
            "return fetch('/api/pools/claude/pause', {{method: 'POST', credentials: '{creds}'}}).then(r => r.status);"
        )
    };
    let without = b.execute(&status("omit"), vec![]).await?;
    assert_eq!(without, json!(401));
    let cookie_only = b.execute(&status("same-origin"), vec![]).await?;
    assert_eq!(cookie_only, json!(403));
    let stats = store
        .pool_stats(&Default::default(), &["claude".to_string()])
        .await
        .unwrap();
    assert!(
        stats[0].paused_until.is_none(),
        "the refused requests paused nothing"
    );

    // The events page shows the stream, new events arriving live.
    b.goto(&u("/events")).await?;
    let late = enqueue(env, "@agentq-test print late", 5);
    wait_text(b, "#events", LONG, "a live event", |t| t.contains(&late)).await;
    env.wait_final(&late, LONG).await;

    // The overview again, for the README picture: pools, states, charts,
    // workers (the window is tall enough for all of them).
    b.goto(&u("/")).await?;
    wait_text(b, "#workers", LONG, "the live worker", |t| !t.is_empty()).await;
    std::fs::write(screenshot_dir().join("overview.png"), b.screenshot().await?).unwrap();
    Ok(())
}
