//! Issue 15's acceptance, the web console's guards: user text escaped on every
//! page, the operator token (bearer, login cookie + CSRF, logout), read-only mode
//! refusing every change, and logging in coming back to the page.

use agentq_shared::status::JobState;
use agentq_tests::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

mod web_common;
use web_common::*;

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
        let body = page_text(&c, format!("{}{path}", web.url)).await;
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
    let job = page_text(&c, format!("{}/jobs/{id}", web.url)).await;
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
    let page = page_text(&c, format!("{}/jobs/{b}", web.url)).await;
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
