//! Issue 15's acceptance: the web console (`agentq web`) over HTTP against a
//! real Redis (escaping, the operator token, CSRF, read-only mode, the OpenAPI
//! spec against the server), and in a real headless Chromium driven over
//! WebDriver (chromedriver) against a real worker, Redis and Docker.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use agentq_shared::status::JobState;
use agentq_tests::*;
use reqwest::{redirect::Policy, StatusCode};
use serde_json::{json, Value};

const LONG: Duration = Duration::from_secs(120);
const TOKEN: &str = "operator-token-for-tests-0123456789";

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Enqueues a job for the claude pool (no worker runs it unless one is started).
fn enqueue(env: &TestEnv, task: &str, issue: u32) -> String {
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
async fn force_state(env: &TestEnv, id: &str, state: JobState, fields: &[(&str, String)]) {
    let store = env.store().await;
    let rec = store.get(id).await.unwrap().unwrap();
    assert!(store
        .transition(id, state, Some(rec.seq), fields)
        .await
        .unwrap());
}

/// The CSRF token in a page's forms.
fn csrf_in(html: &str) -> Option<String> {
    let at = html.find("name=\"csrf\" value=\"")? + "name=\"csrf\" value=\"".len();
    Some(html[at..].split('"').next()?.to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn user_text_is_escaped_on_every_page() {
    let env = TestEnv::new();
    let id = enqueue(&env, "<script>alert(1)</script> fix it", 7);
    force_state(
        &env,
        &id,
        JobState::Blocked,
        &[
            ("question", "<img src=x onerror=alert(2)>?".into()),
            ("error", "</pre><b>bold</b>".into()),
        ],
    )
    .await;
    let web = env.web(Some(TOKEN));
    let c = http();
    for path in ["/jobs", &format!("/jobs/{id}"), "/events", "/"] {
        let body = c
            .get(format!("{}{path}", web.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            !body.contains("<script>alert(1)")
                && !body.contains("<img src=x")
                && !body.contains("<b>bold"),
            "{path} renders user text as HTML:\n{body}"
        );
        if path == "/jobs" {
            // The list shows the question (the reason to look) for a blocked job.
            assert!(
                body.contains("&lt;img src=x onerror=alert(2)&gt;?"),
                "{path} does not show the question escaped:\n{body}"
            );
        }
    }
    let job = c
        .get(format!("{}/jobs/{id}", web.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        job.contains("&lt;script&gt;alert(1)&lt;/script&gt; fix it"),
        "{job}"
    );
    assert!(job.contains("&lt;img src=x onerror=alert(2)&gt;?"), "{job}");
    assert!(job.contains("&lt;/pre&gt;&lt;b&gt;bold&lt;/b&gt;"), "{job}");
    // The only scripts are the console's own file, and the browser is told
    // to run no other (no inline script, no framing).
    assert_eq!(job.matches("<script").count(), 1, "{job}");
    assert!(!job.contains(TOKEN), "the token is never rendered");
    let r = c
        .get(format!("{}/jobs/{id}", web.url))
        .send()
        .await
        .unwrap();
    let csp = r.headers()["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    // A page of another site reaching the console by DNS rebinding (its own
    // name in Host) is refused; the loopback names are answered.
    let port = web.url.rsplit(':').next().unwrap();
    let r = c
        .get(format!("{}/api/jobs", web.url))
        .header("host", format!("evil.example:{port}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::MISDIRECTED_REQUEST);
    let r = c
        .get(format!("{}/api/jobs", web.url))
        .header("host", format!("localhost:{port}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn changes_need_the_token_and_a_csrf_token_with_the_cookie() {
    let env = TestEnv::new();
    let a = enqueue(&env, "first", 1);
    let b = enqueue(&env, "second", 2);
    let web = env.web(Some(TOKEN));
    let c = http();
    let cancel = |id: &str| format!("{}/api/jobs/{id}/cancel", web.url);

    // No token at all, a wrong bearer, a bearer without the scheme: refused.
    let r = c.post(cancel(&a)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.text().await.unwrap().contains("operator token"));
    let r = c
        .post(cancel(&a))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = c
        .post(cancel(&a))
        .header("authorization", TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // GET on a POST route changes nothing.
    let r = c.get(cancel(&a)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    let store = env.store().await;
    assert_eq!(
        store.get(&a).await.unwrap().unwrap().state,
        JobState::Queued
    );

    // The bearer token works.
    let r = c.post(cancel(&a)).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["state"], "cancelled");
    assert_eq!(
        store.get(&a).await.unwrap().unwrap().state,
        JobState::Cancelled
    );

    // The login form: a wrong token is refused, the right one sets the cookie.
    let r = c
        .post(format!("{}/login", web.url))
        .form(&[("token", "nope")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers().get("set-cookie").is_none());
    let r = c
        .post(format!("{}/login", web.url))
        .form(&[("token", TOKEN), ("next", "/jobs")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "/jobs");
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(
        !cookie.contains(TOKEN),
        "the cookie is a session, not the token"
    );
    let session = cookie.split(';').next().unwrap().to_string();

    // The cookie alone (a cross-site form would carry it, were it not
    // SameSite): refused for want of the CSRF token; a wrong one too.
    let r = c
        .post(cancel(&b))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r.text().await.unwrap().contains("CSRF"));
    let r = c
        .post(cancel(&b))
        .header("cookie", &session)
        .form(&[("csrf", "0".repeat(64))])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // A refused form post says why as a page (escaped like every page).
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("CSRF token missing or wrong"));
    assert_eq!(
        store.get(&b).await.unwrap().unwrap().state,
        JobState::Queued
    );

    // A logged-in page carries the CSRF token in its forms; with it the form
    // post works and comes back to the page.
    let page = c
        .get(format!("{}/jobs/{b}", web.url))
        .header("cookie", &session)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = csrf_in(&page).expect("a logged-in job page has forms with a CSRF token");
    assert!(!page.contains(TOKEN));
    let r = c
        .post(cancel(&b))
        .header("cookie", &session)
        .form(&[("csrf", csrf.as_str()), ("next", &format!("/jobs/{b}"))])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], format!("/jobs/{b}").as_str());
    assert_eq!(
        store.get(&b).await.unwrap().unwrap().state,
        JobState::Cancelled
    );
    // `next` never leads off the server.
    let r = c
        .post(format!("{}/api/pools/claude/resume", web.url))
        .header("cookie", &session)
        .header("x-csrf-token", &csrf)
        .form(&[("next", "//evil.example/")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // Bulk: the list offers what the state allows; the confirmation page
    // says how many; the form does it.
    let c3 = enqueue(&env, "third", 3);
    let list = c
        .get(format!("{}/jobs?state=queued", web.url))
        .header("cookie", &session)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        list.contains("id=\"bulk-cancel\"") && !list.contains("id=\"bulk-retry\""),
        "{list}"
    );
    let r = c
        .get(format!("{}/jobs/bulk?op=cancel&state=completed", web.url))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("finished already"));
    let confirm = c
        .get(format!("{}/jobs/bulk?op=cancel&state=queued", web.url))
        .header("cookie", &session)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        confirm.contains("cancel <strong>1</strong> jobs"),
        "{confirm}"
    );
    let r = c
        .post(format!("{}/api/jobs/bulk/cancel", web.url))
        .header("cookie", &session)
        .form(&[
            ("csrf", csrf.as_str()),
            ("state", "queued"),
            ("next", "/jobs"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        store.get(&c3).await.unwrap().unwrap().state,
        JobState::Cancelled
    );

    // Without a cookie the same page shows no forms and no CSRF token.
    let page = c
        .get(format!("{}/jobs/{b}", web.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(csrf_in(&page).is_none());

    // Logging out forgets the session.
    let r = c
        .post(format!("{}/logout", web.url))
        .header("cookie", &session)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let r = c
        .post(format!("{}/api/pools/claude/resume", web.url))
        .header("cookie", &session)
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

/// The spec, parsed.
fn spec() -> Value {
    let text = std::fs::read_to_string(repo_root().join("producer/openapi.yaml")).unwrap();
    serde_yaml::from_str(&text).unwrap()
}

/// (method, path) of every operation in the spec.
fn spec_operations(spec: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            out.push((method.to_uppercase(), path.clone()));
        }
    }
    out.sort();
    out
}

/// (method, path) of every /api/ route the server's router declares.
fn server_api_routes() -> Vec<(String, String)> {
    let src = std::fs::read_to_string(repo_root().join("producer/src/web/mod.rs")).unwrap();
    let mut out = Vec::new();
    for line in src.lines().map(str::trim) {
        let Some(rest) = line.strip_prefix(".route(\"") else {
            continue;
        };
        let (path, handlers) = rest.split_once('"').unwrap();
        if !path.starts_with("/api/") {
            continue;
        }
        for m in ["get", "post"] {
            if handlers.contains(&format!("{m}(")) {
                out.push((m.to_uppercase(), path.to_string()));
            }
        }
    }
    out.sort();
    out
}

fn resolve<'a>(spec: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let mut cur = spec;
            for part in r.trim_start_matches("#/").split('/') {
                cur = &cur[part];
            }
            resolve(spec, cur)
        }
        None => v,
    }
}

/// Checks `value` against (the subset of OpenAPI schema the spec uses):
/// type, nullable, required, properties, items, enum, allOf.
fn check_schema(spec: &Value, schema: &Value, value: &Value, at: &str) {
    let schema = resolve(spec, schema);
    if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
        for s in all {
            check_schema(spec, s, value, at);
        }
        return;
    }
    if value.is_null() {
        assert!(
            schema["nullable"] == json!(true) || schema.get("type").is_none(),
            "{at}: null where the spec says {schema}"
        );
        return;
    }
    if let Some(e) = schema.get("enum").and_then(Value::as_array) {
        assert!(e.contains(value), "{at}: {value} is not one of {e:?}");
    }
    match schema.get("type").and_then(Value::as_str) {
        Some("object") => {
            let obj = value
                .as_object()
                .unwrap_or_else(|| panic!("{at}: {value} is not an object"));
            for r in schema["required"].as_array().into_iter().flatten() {
                let k = r.as_str().unwrap();
                assert!(obj.contains_key(k), "{at}: `{k}` is missing in {value}");
            }
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (k, s) in props {
                    if let Some(v) = obj.get(k) {
                        check_schema(spec, s, v, &format!("{at}.{k}"));
                    }
                }
            }
        }
        Some("array") => {
            let arr = value
                .as_array()
                .unwrap_or_else(|| panic!("{at}: {value} is not an array"));
            if let Some(items) = schema.get("items") {
                for (i, v) in arr.iter().enumerate() {
                    check_schema(spec, items, v, &format!("{at}[{i}]"));
                }
            }
        }
        Some("string") => assert!(value.is_string(), "{at}: {value} is not a string"),
        Some("integer") => assert!(
            value.is_u64() || value.is_i64(),
            "{at}: {value} is not an integer"
        ),
        Some("boolean") => assert!(value.is_boolean(), "{at}: {value} is not a boolean"),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_openapi_spec_matches_the_server() {
    let spec = spec();
    // Every /api/ route the server has is in the spec, and nothing else is.
    assert_eq!(
        spec_operations(&spec),
        server_api_routes(),
        "producer/openapi.yaml and the router in producer/src/web/mod.rs differ"
    );

    let env = TestEnv::new();
    let queued = enqueue(&env, "to cancel", 1);
    let failed = enqueue(&env, "to retry", 2);
    let blocked = enqueue(&env, "to answer", 3);
    let bulk = enqueue(&env, "to retry in bulk", 4);
    force_state(&env, &failed, JobState::Failed, &[("error", "boom".into())]).await;
    force_state(&env, &bulk, JobState::Failed, &[("error", "boom".into())]).await;
    force_state(
        &env,
        &blocked,
        JobState::Blocked,
        &[("question", "Which?".into())],
    )
    .await;
    let web = env.web(Some(TOKEN));
    let c = http();
    let served: Value = serde_yaml::from_str(
        &c.get(format!("{}/api/openapi.yaml", web.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(served, spec, "the server serves the spec in the repository");

    // Each operation called once, with arguments that make it succeed.
    for (method, path) in spec_operations(&spec) {
        let op = &spec["paths"][&path][method.to_lowercase()];
        let (url_path, body) = match (method.as_str(), path.as_str()) {
            ("POST", "/api/jobs/{id}/retry") => (path.replace("{id}", &failed), json!({})),
            ("POST", "/api/jobs/{id}/cancel") => (path.replace("{id}", &queued), json!({})),
            ("POST", "/api/jobs/{id}/resume") => (
                path.replace("{id}", &blocked),
                json!({"answer": "that one", "agent": "codex"}),
            ),
            ("POST", "/api/jobs/bulk/{op}") => (
                path.replace("{op}", "retry"),
                json!({"state": "failed", "agent": "claude"}),
            ),
            ("POST", "/api/pools/{pool}/pause") => {
                (path.replace("{pool}", "gemini"), json!({"for": "10m"}))
            }
            ("POST", _) => (path.replace("{pool}", "gemini"), json!({})),
            ("GET", "/api/events/stream") => (format!("{path}?after=0"), Value::Null),
            _ => (path.replace("{id}", &queued), Value::Null),
        };
        let url = format!("{}{url_path}", web.url);
        let resp = if method == "POST" {
            c.post(&url)
                .bearer_auth(TOKEN)
                .json(&body)
                .send()
                .await
                .unwrap()
        } else {
            c.get(&url).send().await.unwrap()
        };
        let status = resp.status().as_u16().to_string();
        assert_eq!(
            status,
            "200",
            "{method} {url_path}: {}",
            resp.text().await.unwrap()
        );
        let ctype = resp.headers()["content-type"].to_str().unwrap().to_string();
        let media = op["responses"]["200"]["content"].as_object().unwrap();
        let (spec_type, media_spec) = media.iter().next().unwrap();
        assert!(
            ctype.starts_with(spec_type.as_str()),
            "{method} {path}: {ctype} but the spec says {spec_type}"
        );
        if spec_type == "application/json" {
            let v: Value = resp.json().await.unwrap();
            check_schema(
                &spec,
                &media_spec["schema"],
                &v,
                &format!("{method} {path}"),
            );
        } else if spec_type == "text/event-stream" {
            // The first event comes at once; the stream goes on.
            let mut resp = resp;
            let chunk = tokio::time::timeout(Duration::from_secs(10), resp.chunk())
                .await
                .expect("an event stream sends its first event at once")
                .unwrap()
                .unwrap();
            assert!(
                String::from_utf8_lossy(&chunk).contains("event: "),
                "{path}"
            );
        }
        // Every listed error answer has the error shape: try a missing job.
        if path.contains("{id}") && op["responses"].get("404").is_some() {
            let url = format!(
                "{}{}",
                web.url,
                path.replace("{id}", "01NOSUCHJOB0000000000000000")
            );
            let resp = if method == "POST" {
                c.post(&url)
                    .bearer_auth(TOKEN)
                    .json(&json!({"answer": "x"}))
                    .send()
                    .await
                    .unwrap()
            } else {
                c.get(&url).send().await.unwrap()
            };
            assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{method} {path}");
            let v: Value = resp.json().await.unwrap();
            let err = resolve(&spec, &op["responses"]["404"]);
            check_schema(
                &spec,
                &err["content"]["application/json"]["schema"],
                &v,
                &path,
            );
        }
        // Every POST lists 401 and 403 and answers 401 without a token.
        if method == "POST" {
            for code in ["401", "403"] {
                assert!(
                    op["responses"].get(code).is_some(),
                    "{path} does not list {code}"
                );
            }
            let resp = c.post(&url).json(&body).send().await.unwrap();
            assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{method} {path}");
        }
    }

    // What the calls did, read back from the store.
    let store = env.store().await;
    assert_eq!(
        store.get(&queued).await.unwrap().unwrap().state,
        JobState::Cancelled
    );
    assert_eq!(
        store.get(&failed).await.unwrap().unwrap().state,
        JobState::Queued
    );
    assert_eq!(
        store.get(&bulk).await.unwrap().unwrap().state,
        JobState::Queued
    );
    let b = store.get(&blocked).await.unwrap().unwrap();
    assert_eq!(
        (b.state, b.answer.as_str(), b.input.agent.as_str()),
        (JobState::Queued, "that one", "codex")
    );

    // Refusals keep the error shape and the listed codes.
    let r = c
        .post(format!("{}/api/jobs/bulk/cancel", web.url))
        .bearer_auth(TOKEN)
        .json(&json!({"state": "completed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.json::<Value>().await.unwrap()["error"]
        .as_str()
        .unwrap()
        .contains("finished already"));
    let r = c
        .get(format!("{}/api/jobs?state=nope", web.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = c.get(format!("{}/api/nope", web.url)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // Every query parameter the spec lists for a GET is taken.
    for (method, path) in spec_operations(&spec) {
        let params = spec["paths"][&path][method.to_lowercase()]["parameters"].clone();
        let query: Vec<String> = params
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| resolve(&spec, p))
            .filter(|p| p["in"] == "query")
            .map(|p| {
                let name = p["name"].as_str().unwrap();
                let value = match name {
                    "state" => "queued",
                    "agent" => "claude",
                    "repo" => "core/demo",
                    "since" => "1h",
                    "q" => "to",
                    "cursor" => "0",
                    "limit" | "count" => "5",
                    "after" => "0",
                    other => panic!("no test value for query parameter {other} of {path}"),
                };
                format!("{name}={value}")
            })
            .collect();
        if method != "GET" || query.is_empty() || path.ends_with("/stream") {
            continue;
        }
        let url = format!(
            "{}{}?{}",
            web.url,
            path.replace("{id}", &queued),
            query.join("&")
        );
        let r = c.get(&url).send().await.unwrap();
        assert_eq!(
            r.status(),
            StatusCode::OK,
            "{url}: {}",
            r.text().await.unwrap()
        );
        let v: Value = r.json().await.unwrap();
        let schema = &spec["paths"][&path]["get"]["responses"]["200"]["content"]
            ["application/json"]["schema"];
        check_schema(&spec, schema, &v, &url);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_read_only_console_refuses_every_change() {
    let env = TestEnv::new();
    let id = enqueue(&env, "stay queued", 1);
    // An empty or missing token variable is refused at start.
    let out = env.cli(
        &[
            "web",
            "--addr",
            "127.0.0.1:0",
            "--token-env",
            "AGENTQ_NO_SUCH_VAR",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("AGENTQ_NO_SUCH_VAR is missing or empty"));

    let web = env.web(None);
    let c = http();
    for (method, path) in spec_operations(&spec()) {
        if method != "POST" {
            continue;
        }
        let url = format!(
            "{}{}",
            web.url,
            path.replace("{id}", &id)
                .replace("{pool}", "claude")
                .replace("{op}", "cancel")
        );
        // Even with what would be the token.
        let r = c
            .post(&url)
            .bearer_auth(TOKEN)
            .json(&json!({"state": "queued", "answer": "x"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "POST {path}");
        assert!(r.text().await.unwrap().contains("read-only"));
    }
    let r = c
        .post(format!("{}/login", web.url))
        .form(&[("token", TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r.headers().get("set-cookie").is_none());
    let store = env.store().await;
    assert_eq!(
        store.get(&id).await.unwrap().unwrap().state,
        JobState::Queued
    );
    // Reading works.
    let page = c
        .get(format!("{}/jobs/{id}", web.url))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let page = page.text().await.unwrap();
    assert!(page.contains("read-only") && csrf_in(&page).is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_job_list_pages_through_a_filter_with_a_cursor() {
    let env = TestEnv::new();
    let lines: String = (0..30)
        .map(|i| {
            format!(
                "{}\n",
                json!({"repo": if i % 3 == 0 { "other" } else { "demo" }, "agent": "claude", "task": format!("task number {i}"), "issue": i + 1})
            )
        })
        .collect();
    let ids = env.enqueue_ndjson(&lines);
    let web = env.web(None);
    let c = http();
    let get = |q: String| {
        let c = c.clone();
        let url = format!("{}/api/jobs?{q}", web.url);
        async move {
            c.get(url)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    // Pages of 7 over repo=demo: 20 jobs, newest first, each once.
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = get(format!("repo=demo&limit=7&cursor={cursor}")).await;
        for j in page["jobs"].as_array().unwrap() {
            seen.push(j["id"].as_str().unwrap().to_string());
        }
        match page["next"].as_u64() {
            Some(n) => cursor = n.to_string(),
            None => break,
        }
    }
    // The same order as one big page (index order: newest first, ties in
    // the same millisecond by id), each job once.
    let one: Vec<String> = get("repo=demo&limit=500".into()).await["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(seen, one);
    let mut want: Vec<String> = ids
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 3 != 0)
        .map(|(_, id)| id.clone())
        .collect();
    let mut sorted = seen.clone();
    sorted.sort();
    want.sort();
    assert_eq!(sorted, want);
    let want = one;
    // Search: by issue number, by task text, by id prefix.
    let hit = get("q=%2313".into()).await;
    assert_eq!(hit["jobs"][0]["id"], ids[12].as_str());
    assert_eq!(hit["jobs"].as_array().unwrap().len(), 1);
    let hit = get("q=NUMBER%2029".into()).await;
    assert_eq!(hit["jobs"][0]["id"], ids[29].as_str());
    let hit = get(format!("q={}", &ids[5])).await;
    assert_eq!(hit["jobs"][0]["id"], ids[5].as_str());
    // The page renders the same first page with a link to the next.
    let html = c
        .get(format!("{}/jobs?repo=demo&limit=7", web.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains(&want[0]) && html.contains(&want[6]) && !html.contains(&want[7]));
    let next = get("repo=demo&limit=7".into()).await["next"]
        .as_u64()
        .unwrap();
    assert!(html.contains(&format!("cursor={next}\"")), "{html}");
}

// ---------------------------------------------------------------- browser

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
        json!({"args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900"]}),
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
    // its output appearing live.
    let id = enqueue(
        env,
        "@agentq-test print live-line-4711 @agentq-test sleep 2",
        1,
    );
    b.goto(&u(&format!("/jobs/{id}"))).await?;
    wait_text(b, "#job-state", LONG, "queued before any worker", |t| {
        t == "queued"
    })
    .await;
    let _w = env.worker("w1", 2);
    wait_text(b, "#job-state", LONG, "running, live", |t| {
        t == "running" || t == "completed"
    })
    .await;
    wait_text(b, "#log", LONG, "live output", |t| {
        t.contains("live-line-4711")
    })
    .await;
    wait_text(b, "#job-state", LONG, "completed, live", |t| {
        t == "completed"
    })
    .await;
    assert_eq!(
        store.get(&id).await.unwrap().unwrap().state,
        JobState::Completed
    );
    b.goto(&u("/")).await?;
    b.goto(&u(&format!("/jobs/{id}"))).await?;
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

    // The overview again, for the README picture: pools, states, charts, workers.
    b.goto(&u("/")).await?;
    wait_text(b, "#workers", LONG, "the live worker", |t| !t.is_empty()).await;
    std::fs::write(screenshot_dir().join("overview.png"), b.screenshot().await?).unwrap();
    Ok(())
}

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
    let page = c
        .get(format!("{}/", web.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("completed: <strong>2</strong>"), "{page}");
    assert!(
        page.contains("failed or timed out: <strong>1</strong>"),
        "{page}"
    );

    // Links to the issue, branch, commit status and PR, without the
    // credentials written into the forge URL.
    let job = c
        .get(format!("{}/jobs/{done1}", web.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
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
    let job = c
        .get(format!("{}/jobs/{failed}", web.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
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
    let odd = c
        .get(format!("{}/jobs/{odd}", web.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
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
