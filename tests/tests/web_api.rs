//! Issue 15's acceptance, the web console's JSON API: `producer/openapi.yaml`
//! against the server (every route, status and shape both ways), and cursor pages
//! that neither repeat nor skip while jobs come and go.

use std::time::Duration;

use agentq_shared::status::JobState;
use agentq_tests::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

mod web_common;
use web_common::*;

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
    let served: Value =
        serde_yaml::from_str(&page_text(&c, format!("{}/api/openapi.yaml", web.url)).await)
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
    let html = page_text(&c, format!("{}/jobs?repo=demo&limit=7", web.url)).await;
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
