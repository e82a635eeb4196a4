//! Issue 15's acceptance, a job's live output in the web console: the page's SSE
//! stream and the JSON log API, with characters cut between chunks.

use std::time::Instant;

use agentq_shared::status::JobState;
use agentq_tests::*;
use reqwest::StatusCode;

mod web_common;
use web_common::*;

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
