//! What the web console's test files share: the operator token, an HTTP
//! client, jobs put in a state by hand, and the OpenAPI spec. Each test binary
//! uses some of it.
#![allow(dead_code)]

use std::time::Duration;

use agentq_shared::status::JobState;
use agentq_tests::*;
use reqwest::redirect::Policy;
use serde_json::Value;

pub const LONG: Duration = Duration::from_secs(120);
pub const TOKEN: &str = "operator-token-for-tests-0123456789";

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Enqueues a job for the claude pool (no worker runs it unless one is started).
pub fn enqueue(env: &TestEnv, task: &str, issue: u32) -> String {
    env.enqueue(&[
        "--repo",
        "demo",
        "--agent",
        "claude",
        "--task",
        task,
        "--issue",
        &issue.to_string(),
    ])
}

/// Moves queued job `id` to `state` by hand (as a worker would), with `fields`.
pub async fn force_state(env: &TestEnv, id: &str, state: JobState, fields: &[(&str, String)]) {
    let store = env.store().await;
    let rec = store.get(id).await.unwrap().unwrap();
    assert!(store
        .transition(id, state, Some(rec.seq), fields)
        .await
        .unwrap());
}

/// The CSRF token in a page's forms.
pub fn csrf_in(html: &str) -> Option<String> {
    let at = html.find("name=\"csrf\" value=\"")? + "name=\"csrf\" value=\"".len();
    Some(html[at..].split('"').next()?.to_string())
}

/// The body of `GET url`, whatever its status.
pub async fn page_text(c: &reqwest::Client, url: String) -> String {
    c.get(url).send().await.unwrap().text().await.unwrap()
}

/// The spec, parsed.
pub fn spec() -> Value {
    let text = std::fs::read_to_string(repo_root().join("producer/openapi.yaml")).unwrap();
    serde_yaml::from_str(&text).unwrap()
}

/// (method, path) of every operation in the spec.
pub fn spec_operations(spec: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            out.push((method.to_uppercase(), path.clone()));
        }
    }
    out.sort();
    out
}
