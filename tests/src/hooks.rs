//! [`HookReceiver`]: a local webhook receiver (axum on 127.0.0.1) for the
//! notification tests. It records every request it gets, and answers as its
//! [`HookMode`] says: 200, an error status, or never (it hangs).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    routing::post,
    Router,
};

/// How the receiver answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookMode {
    /// 200 `ok`.
    Ok,
    /// This status (e.g. 500).
    Fail(u16),
    /// No answer ever (the request stays open).
    Hang,
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct HookRequest {
    /// Headers, names lower-cased.
    pub headers: HashMap<String, String>,
    /// The body.
    pub body: Vec<u8>,
    /// When it arrived.
    pub at: chrono::DateTime<chrono::Utc>,
    /// The status it was answered with (`None`: hung).
    pub answered: Option<u16>,
}

impl HookRequest {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
    /// A header's value ("" when absent).
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", |s| s.as_str())
    }
    /// The receiver's own check, by HMAC code of the tests' own (not
    /// agentq's): `X-Agentq-Signature` is `sha256=` HMAC-SHA256(`secret`,
    /// "{X-Agentq-Timestamp}.{body}").
    pub fn signed_with(&self, secret: &str) -> bool {
        use hmac::{Hmac, Mac};
        let ts = self.header("x-agentq-timestamp");
        let Some(hex_sig) = self.header("x-agentq-signature").strip_prefix("sha256=") else {
            return false;
        };
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{ts}.").as_bytes());
        mac.update(&self.body);
        mac.verify_slice(&hex::decode(hex_sig).unwrap_or_default())
            .is_ok()
    }
}

#[derive(Debug)]
struct Inner {
    mode: HookMode,
    got: Vec<HookRequest>,
}

/// A webhook receiver on a loopback port, stopped when dropped.
pub struct HookReceiver {
    /// Its URL (`http://127.0.0.1:PORT/hook`).
    pub url: String,
    inner: Arc<Mutex<Inner>>,
    task: tokio::task::JoinHandle<()>,
}

impl HookReceiver {
    /// Starts a receiver answering as `mode` says.
    pub async fn start(mode: HookMode) -> Self {
        let inner = Arc::new(Mutex::new(Inner { mode, got: vec![] }));
        let app = Router::new()
            .route("/hook", post(receive))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            url: format!("http://127.0.0.1:{port}/hook"),
            inner,
            task,
        }
    }

    /// Answers as `mode` says from now on.
    pub fn set_mode(&self, mode: HookMode) {
        self.inner.lock().unwrap().mode = mode;
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<HookRequest> {
        self.inner.lock().unwrap().got.clone()
    }

    /// The requests answered 200, one per event id (the first), in order.
    pub fn taken(&self) -> Vec<HookRequest> {
        let mut seen = std::collections::HashSet::new();
        self.requests()
            .into_iter()
            .filter(|r| r.answered == Some(200))
            .filter(|r| seen.insert(r.header("x-agentq-event-id").to_string()))
            .collect()
    }
}

impl Drop for HookReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn receive(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, &'static str) {
    let mode = inner.lock().unwrap().mode;
    let answered = match mode {
        HookMode::Ok => Some(200),
        HookMode::Fail(s) => Some(s),
        HookMode::Hang => None,
    };
    inner.lock().unwrap().got.push(HookRequest {
        headers: headers
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
            .collect(),
        body: body.to_vec(),
        at: chrono::Utc::now(),
        answered,
    });
    match answered {
        Some(s) => (StatusCode::from_u16(s).unwrap(), "answer"),
        None => std::future::pending().await,
    }
}
