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

/// The body of `GET url`, whatever its status.
async fn page_text(c: &reqwest::Client, url: String) -> String {
    c.get(url).send().await.unwrap().text().await.unwrap()
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
            ("summary", "Done </pre><i>italic</i>".into()),
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
                && !body.contains("<b>bold")
                && !body.contains("<i>italic"),
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
    // The agent's summary, on the job page, escaped.
    assert!(
        job.contains("<pre id=\"summary\">Done &lt;/pre&gt;&lt;i&gt;italic&lt;/i&gt;</pre>"),
        "{job}"
    );
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
    // Through a tunnel on another port (`ssh -L 8000:127.0.0.1:{port}`).
    let r = c
        .get(format!("{}/api/jobs", web.url))
        .header("host", "localhost:8000")
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
            ("POST", "/api/jobs/bulk/retry") => {
                (path.clone(), json!({"state": "failed", "agent": "claude"}))
            }
            ("POST", "/api/jobs/bulk/cancel") => {
                (path.clone(), json!({"state": "queued", "agent": "codex"}))
            }
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
                let body = if path.ends_with("/resume") {
                    json!({"answer": "x"})
                } else {
                    json!({})
                };
                c.post(&url)
                    .bearer_auth(TOKEN)
                    .json(&body)
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
                    "cursor" => "9999999999999-01ZZZZZZZZZZZZZZZZZZZZZZZZ",
                    "partial" => "",
                    "view" => "text",
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
        match page["next"].as_str() {
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
        .as_str()
        .unwrap()
        .to_string();
    assert!(html.contains(&format!("cursor={next}\"")), "{html}");
    // A cursor that is not a page's `next` is refused.
    let r = c
        .get(format!("{}/api/jobs?cursor=12", web.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

/// Every page of `query` after `cursor` (none: from the first), each page's ids.
async fn pages_after(
    c: &reqwest::Client,
    web: &WebProc,
    query: &str,
    mut cursor: Option<String>,
) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    loop {
        let url = match &cursor {
            Some(cur) => format!("{}/api/jobs?{query}&cursor={cur}", web.url),
            None => format!("{}/api/jobs?{query}", web.url),
        };
        let page: Value = c.get(url).send().await.unwrap().json().await.unwrap();
        pages.push(
            page["jobs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|j| j["id"].as_str().unwrap().to_string())
                .collect(),
        );
        match page["next"].as_str() {
            Some(n) => cursor = Some(n.to_string()),
            None => return pages,
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_neither_repeat_nor_skip_while_jobs_come_and_go() {
    let env = TestEnv::new();
    let lines: String = (0..25)
        .map(|i| {
            format!(
                "{}\n",
                json!({"repo": "demo", "agent": "claude", "task": format!("job {i}"), "issue": i + 1})
            )
        })
        .collect();
    env.enqueue_ndjson(&lines);
    let web = env.web(None);
    let c = http();
    let query = "state=queued&limit=6";
    // The original set, in index order.
    let all: Vec<String> = pages_after(&c, &web, "state=queued&limit=500", None)
        .await
        .concat();
    assert_eq!(all.len(), 25);
    let first = c
        .get(format!("{}/api/jobs?{query}", web.url))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let page1: Vec<String> = first["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(page1, all[..6]);
    // Meanwhile: newer jobs arrive (before page 1 in the index), two jobs of
    // page 1 and one further on leave the state.
    let new = env.enqueue_ndjson(&format!(
        "{}\n{}\n{}\n",
        json!({"repo": "demo", "agent": "claude", "task": "new 1", "issue": 101}),
        json!({"repo": "demo", "agent": "claude", "task": "new 2", "issue": 102}),
        json!({"repo": "demo", "agent": "claude", "task": "new 3", "issue": 103}),
    ));
    let store = env.store().await;
    let gone = [all[1].clone(), all[4].clone(), all[15].clone()];
    store.cancel_many(&gone, &mut |_, _| {}).await.unwrap();
    // The rest of the pages go on right after page 1: every original job
    // still queued once, in order, none of the new ones.
    let rest = pages_after(
        &c,
        &web,
        query,
        Some(first["next"].as_str().unwrap().to_string()),
    )
    .await;
    assert_eq!(rest[0].len(), 6, "a full second page: {rest:?}");
    let rest = rest.concat();
    let want: Vec<String> = all[6..]
        .iter()
        .filter(|id| !gone.contains(id))
        .cloned()
        .collect();
    assert_eq!(rest, want);
    assert!(new.iter().all(|n| !rest.contains(n)));
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

/// The `log` events of an SSE stream read until its `end` event, each
/// event's data decoded as the browser does (`data:` lines joined with
/// `\n`, one space after the colon dropped) and then as JSON.
async fn sse_log_until_end(resp: reqwest::Response) -> String {
    let mut resp = resp;
    let mut raw = Vec::new();
    let mut out = String::new();
    let deadline = Instant::now() + LONG;
    loop {
        let chunk = tokio::time::timeout_at(deadline.into(), resp.chunk())
            .await
            .expect("the stream ends with `end` in time")
            .unwrap()
            .expect("the stream goes on until `end`");
        raw.extend_from_slice(&chunk);
        // Whole events only: they end with a blank line.
        while let Some(at) = raw.windows(2).position(|w| w == b"\n\n") {
            let event: Vec<u8> = raw.drain(..at + 2).collect();
            let text = String::from_utf8(event).expect("an SSE stream is UTF-8");
            let (mut name, mut data) = ("message".to_string(), String::new());
            for line in text.split(['\n', '\r']).filter(|l| !l.is_empty()) {
                let (field, value) = line.split_once(':').unwrap_or((line, ""));
                let value = value.strip_prefix(' ').unwrap_or(value);
                match field {
                    "event" => name = value.to_string(),
                    "data" => {
                        data.push_str(value);
                        data.push('\n');
                    }
                    _ => {}
                }
            }
            data.pop();
            match name.as_str() {
                "log" => out.push_str(&serde_json::from_str::<String>(&data).unwrap()),
                "end" => return out,
                _ => {}
            }
        }
    }
}

/// Appends `chunk` to job `id`'s output tail in Redis, as a worker does.
async fn add_output(store: &agentq_shared::store::JobStore, id: &str, chunk: &[u8]) {
    let _: String = redis::cmd("XADD")
        .arg(store.keys().log_tail(id))
        .arg("*")
        .arg("d")
        .arg(chunk)
        .query_async(&mut store.conn())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn live_output_arrives_byte_for_byte_with_characters_cut_between_chunks() {
    let env = TestEnv::new();
    let id = enqueue(&env, "prints", 1);
    force_state(&env, &id, JobState::Running, &[]).await;
    let store = env.store().await;
    let add = |chunk: Vec<u8>| {
        let (store, id) = (store.clone(), id.clone());
        async move { add_output(&store, &id, &chunk).await }
    };
    // "é" and "€" cut between chunks; a line ending without its newline;
    // CR LF, a lone CR, blank lines, a leading space.
    let text = "first line\n\n caf\u{e9} costs 3\u{20ac}\r\nprogress 50%\rprogress 100%\nno newline at the end";
    let bytes = text.as_bytes();
    let cut1 = text.find('\u{e9}').unwrap() + 1;
    let cut2 = text.find('\u{20ac}').unwrap() + 2;
    add(bytes[..cut1].to_vec()).await;
    // The page shows the output so far, not the cut character, and its
    // stream goes on from the character's first byte.
    let web = env.web(None);
    let c = http();
    let page = page_text(&c, format!("{}/jobs/{id}", web.url)).await;
    let shown = page
        .split("data-stream=\"")
        .nth(1)
        .and_then(|p| p.split_once("\">"))
        .expect("a live log");
    let (stream_url, rest) = (shown.0.replace("&amp;", "&"), shown.1);
    let on_page = rest.split("</pre>").next().unwrap().replace("&#10;", "\n");
    assert_eq!(on_page, "first line\n\n caf", "{page}");
    assert!(
        stream_url.ends_with("&view=text&partial=c3"),
        "{stream_url}"
    );
    let resp = c
        .get(format!("{}{stream_url}", web.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    add(bytes[cut1..cut2].to_vec()).await;
    add(bytes[cut2..].to_vec()).await;
    force_state(&env, &id, JobState::Completed, &[]).await;
    let live = sse_log_until_end(resp).await;
    // The page's stream is the readable view (`view=text`): CR LF a line
    // break, the progress bar line by line.
    assert_eq!(
        format!("{on_page}{live}"),
        "first line\n\n caf\u{e9} costs 3\u{20ac}\nprogress 50%^M\nprogress 100%\nno newline at the end"
    );
    // The API's own stream, from the start: the whole of it, byte for byte.
    let resp = c
        .get(format!("{}/api/jobs/{id}/log/stream?after=0", web.url))
        .send()
        .await
        .unwrap();
    assert_eq!(sse_log_until_end(resp).await, text);
}

/// The JSON log API reads on across calls without cutting a character: a cut
/// one comes back as `partial` and is completed by the next read.
#[tokio::test(flavor = "multi_thread")]
async fn the_log_api_reads_on_without_cutting_a_character() {
    let env = TestEnv::new();
    let id = enqueue(&env, "prints", 1);
    force_state(&env, &id, JobState::Running, &[]).await;
    let store = env.store().await;
    let add = |chunk: &[u8]| {
        let (store, id, chunk) = (store.clone(), id.clone(), chunk.to_vec());
        async move { add_output(&store, &id, &chunk).await }
    };
    let text = "caf\u{e9} 3\u{20ac}";
    let cut = text.find('\u{20ac}').unwrap() + 1;
    add(&text.as_bytes()[..cut]).await;
    let web = env.web(None);
    let c = http();
    let get = |query: String| {
        let c = c.clone();
        let url = format!("{}/api/jobs/{id}/log?{query}", web.url);
        async move {
            let r = c.get(url).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            r.json::<serde_json::Value>().await.unwrap()
        }
    };
    let first = get("after=0".into()).await;
    assert_eq!(first["data"], "caf\u{e9} 3", "{first}");
    assert_eq!(first["partial"], "e2", "{first}");
    add(&text.as_bytes()[cut..]).await;
    let query = format!(
        "after={}&partial={}",
        first["last"].as_str().unwrap(),
        first["partial"].as_str().unwrap()
    );
    let second = get(query).await;
    assert_eq!(second["data"], "\u{20ac}", "{second}");
    assert_eq!(second["partial"], "", "{second}");
    let bad = c
        .get(format!("{}/api/jobs/{id}/log?partial=zz", web.url))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread")]
async fn logging_in_comes_back_to_the_page() {
    let env = TestEnv::new();
    let id = enqueue(&env, "look at me", 1);
    let web = env.web(Some(TOKEN));
    let c = http();
    let text = |r: reqwest::Response| async move { r.text().await.unwrap() };
    // A page's "Log in" link carries the page.
    let page = page_text(&c, format!("{}/jobs?state=queued&agent=claude", web.url)).await;
    assert!(
        page.contains("href=\"/login?next=%2Fjobs%3Fstate%3Dqueued%26agent%3Dclaude\""),
        "{page}"
    );
    // The login form keeps it, a wrong token too, and logging in goes there.
    let form = page_text(&c, format!("{}/login?next=%2Fjobs%2F{id}", web.url)).await;
    assert!(
        form.contains(&format!("name=\"next\" value=\"/jobs/{id}\"")),
        "{form}"
    );
    let wrong = text(
        c.post(format!("{}/login", web.url))
            .form(&[("token", "nope"), ("next", &format!("/jobs/{id}"))])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(wrong.contains(&format!("name=\"next\" value=\"/jobs/{id}\"")));
    let login = |next: String| {
        let c = c.clone();
        let url = format!("{}/login", web.url);
        async move {
            let r = c
                .post(url)
                .form(&[("token", TOKEN), ("next", &next)])
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::SEE_OTHER, "{next}");
            r.headers()["location"].to_str().unwrap().to_string()
        }
    };
    assert_eq!(login(format!("/jobs/{id}")).await, format!("/jobs/{id}"));
    assert_eq!(
        login("/jobs?state=failed&q=x".into()).await,
        "/jobs?state=failed&q=x"
    );
    // Never off the server: another host, a scheme, a backslash, no slash.
    for bad in [
        "//evil.example/",
        "https://evil.example/",
        "/\\evil.example",
        "javascript:alert(1)",
        "jobs",
        "/a\r\nSet-Cookie: x=1",
    ] {
        assert_eq!(login(bad.into()).await, "/", "{bad}");
        let form = text(
            c.get(format!("{}/login", web.url))
                .query(&[("next", bad)])
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert!(form.contains("name=\"next\" value=\"/\""), "{bad}: {form}");
    }
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
