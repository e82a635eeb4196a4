//! Issue 29: the console's JSON API keeps its contract under a fuzzer.
//! `schemathesis` (from PyPI, installed by `scripts/lib/schemathesis.sh`) runs
//! every check against `agentq web`'s own served spec, with a real Redis and
//! jobs in it; and the bugs it first found each have a focused test here.

use std::{path::PathBuf, process::Command};

use agentq_tests::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

const TOKEN: &str = "operator-token-for-schema-tests-0123";

/// The schemathesis binary `scripts/lib/schemathesis.sh` installs; the test
/// fails (never skips) without it.
fn schemathesis() -> PathBuf {
    let venv = std::env::var_os("AGENTQ_SCHEMATHESIS_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let cache = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache"));
            cache.join("agentq/schemathesis")
        });
    let bin = venv.join("bin/schemathesis");
    assert!(
        bin.is_file(),
        "schemathesis is not installed at {}: run `bash scripts/lib/schemathesis.sh` \
         (scripts/test and .ci/run do it) to install the pinned version from PyPI",
        bin.display()
    );
    bin
}

/// A world with jobs in several states (queued, cancelled, one per pool)
/// and a console with the operator token.
fn seeded() -> (TestEnv, WebProc, Vec<String>) {
    let env = TestEnv::new();
    let mut ids = Vec::new();
    for (n, agent) in ["claude", "codex", "gemini", "local"].iter().enumerate() {
        let issue = (n + 1).to_string();
        let task = format!("task {n}");
        ids.push(env.enqueue(&[
            "--repo", "demo", "--agent", agent, "--task", &task, "--issue", &issue,
        ]));
    }
    env.cli_ok(&["cancel", &ids[1]]);
    env.cli_ok(&["cancel", &ids[3]]);
    let web = env.web(Some(TOKEN));
    (env, web, ids)
}

#[test]
fn schemathesis_finds_no_failure_in_the_served_spec() {
    let bin = schemathesis();
    let (_env, web, _ids) = seeded();
    let scratch = tempfile::tempdir().unwrap();
    let out = Command::new(&bin)
        .arg("--config-file")
        .arg(repo_root().join("tests/schemathesis.toml"))
        .arg("run")
        .arg(format!("{}/api/openapi.yaml", web.url))
        .args(["--header", &format!("Authorization: Bearer {TOKEN}")])
        .args(["--checks", "all"])
        .args(["--seed", "29", "--max-examples", "10"])
        .args(["--generation-database", "none"])
        // Generation speed depends on the machine's load, not on the API.
        .args(["--suppress-health-check", "too_slow"])
        .args(["--request-timeout", "30", "--no-color"])
        .current_dir(scratch.path())
        .output()
        .expect("cannot run schemathesis");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "schemathesis found failures (exit {:?}):\n{report}\nagentq web's log:\n{}",
        out.status.code(),
        std::fs::read_to_string(&web.log).unwrap_or_default()
    );
    // It did test every operation, all the way through.
    assert!(
        report.contains("Tested: 14") && !report.contains("Failed Health Check"),
        "{report}"
    );
}

/// `(status, error message)` of a request.
async fn answer(req: reqwest::RequestBuilder) -> (StatusCode, String) {
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    (status, body["error"].as_str().unwrap_or("").to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_stream_id_or_count_is_a_400_naming_it_not_an_outage() {
    let (_env, web, ids) = seeded();
    let c = reqwest::Client::new();
    let u = &web.url;
    let id = &ids[0];
    for path in [
        "/api/events?after=".to_string(),
        "/api/events?after=x".to_string(),
        "/api/events?after=1-2-3".to_string(),
        format!("/api/jobs/{id}/log?after="),
        format!("/api/jobs/{id}/log?after=%0DM9"),
        format!("/api/jobs/{id}/log/stream?after=abc"),
        "/api/events/stream?after=".to_string(),
    ] {
        let (status, error) = answer(c.get(format!("{u}{path}"))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {error}");
        assert!(error.starts_with("after: "), "{path}: {error}");
    }
    for count in ["1001", "0", "x"] {
        let (status, error) = answer(c.get(format!("{u}/api/events?count={count}"))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "count={count}");
        assert_eq!(error, "count: a number from 1 to 1000");
    }
    // Good ones still read.
    let (status, _) = answer(c.get(format!("{u}/api/events?after=0-0&count=1000"))).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = answer(c.get(format!("{u}/api/jobs/{id}/log?after=0"))).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn wrongly_typed_or_unknown_body_fields_are_a_400_naming_them() {
    let (env, web, ids) = seeded();
    let c = reqwest::Client::new();
    let u = &web.url;
    let cancelled = &ids[1];
    for (path, body, field) in [
        (
            format!("/api/jobs/{cancelled}/retry"),
            json!({"next": {}}),
            "next",
        ),
        (
            "/api/pools/codex/pause".to_string(),
            json!({"for": null}),
            "for",
        ),
        (
            "/api/pools/codex/pause".to_string(),
            json!({"for": 600}),
            "for",
        ),
        (
            "/api/pools/codex/pause".to_string(),
            json!({"for": "0"}),
            "for",
        ),
        (
            "/api/pools/codex/pause".to_string(),
            json!({"for": " 5m"}),
            "for",
        ),
        (
            "/api/pools/codex/resume".to_string(),
            json!({"next": {}}),
            "next",
        ),
        (
            format!("/api/jobs/{cancelled}/resume"),
            json!({"anwser": "yes"}),
            "anwser",
        ),
        (
            format!("/api/jobs/{cancelled}/resume"),
            json!({"answer": "yes", "agent": "nope"}),
            "agent",
        ),
    ] {
        let (status, error) =
            answer(c.post(format!("{u}{path}")).bearer_auth(TOKEN).json(&body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path} {body}: {error}");
        assert!(
            error.starts_with(&format!("{field}: ")),
            "{path} {body}: {error}"
        );
    }
    // Nothing was done: the job is still cancelled.
    let rec: Value = serde_json::from_str(&env.cli_ok(&["status", cancelled, "--json"])).unwrap();
    assert_eq!(rec["state"], "cancelled");
    let (status, _) = answer(
        c.post(format!("{u}/api/jobs/{cancelled}/retry"))
            .bearer_auth(TOKEN)
            .json(&json!({"next": "/jobs"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "a string next is taken");
}
