//! A scripted OpenAI-compatible model server for real agent programs: the test
//! gives it the bash commands the "model" answers with, one per turn, and it
//! records every request so the test can see what the agent sent.
//!
//! It serves `POST /v1/chat/completions` (non-streaming) with one `bash` tool
//! call per answer, the way mini-swe-agent's default config expects: turn `n`
//! of a conversation (the number of assistant messages already in it) gets
//! command `n`, and every turn past the script gets mini-swe-agent's end
//! marker. Anything else is answered 404 and recorded too.
//!
//! Agents reach it the way the `local` pool reaches Ollama: as
//! `host.docker.internal` (Docker's `host-gateway`), so it listens on the
//! host-gateway address, never on all interfaces.

use std::{
    net::SocketAddr,
    process::Command,
    sync::{Arc, Mutex},
};

use axum::{
    body::Bytes,
    extract::{DefaultBodyLimit, State},
    http::{Method, StatusCode, Uri},
    response::{IntoResponse, Response},
    Json, Router,
};
use serde_json::{json, Value};
use tokio::{net::TcpListener, sync::oneshot};

/// The command with which a mini-swe-agent run ends.
pub const SUBMIT: &str = "echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT";

/// One request the stub received.
#[derive(Debug, Clone)]
pub struct StubRequest {
    /// `POST /v1/chat/completions`, …
    pub method: String,
    /// The path.
    pub path: String,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
    /// The body as JSON (`Value::Null` when it is not JSON).
    pub body: Value,
}

impl StubRequest {
    /// The messages of a chat request (empty for anything else).
    pub fn messages(&self) -> &[Value] {
        self.body["messages"].as_array().map_or(&[], Vec::as_slice)
    }

    /// The text of the first user message: the task as the agent wrote it.
    pub fn task_text(&self) -> &str {
        self.messages()
            .iter()
            .find(|m| m["role"] == "user")
            .and_then(|m| m["content"].as_str())
            .unwrap_or("")
    }
}

struct Shared {
    script: Vec<String>,
    requests: Mutex<Vec<StubRequest>>,
}

/// The running stub, stopped on drop.
pub struct LlmStub {
    shared: Arc<Shared>,
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
}

/// The address `host.docker.internal` has in a container with Docker's
/// `host-gateway` (as the worker gives the `local` pool), asked of Docker itself.
///
/// # Panics
/// When Docker cannot run `image` or names no gateway.
pub fn host_gateway_ip(image: &str) -> String {
    let out = Command::new("docker")
        .args([
            "run",
            "--rm",
            "--network",
            "none",
            "--add-host",
            "host.docker.internal:host-gateway",
            "--entrypoint",
            "cat",
            image,
            "/etc/hosts",
        ])
        .output()
        .expect("docker run");
    let hosts = String::from_utf8_lossy(&out.stdout);
    hosts
        .lines()
        .find_map(|l| {
            let mut parts = l.split_whitespace();
            let ip = parts.next()?;
            parts
                .any(|n| n == "host.docker.internal")
                .then(|| ip.to_string())
        })
        .unwrap_or_else(|| {
            panic!(
                "Docker gave no host-gateway address in {image}: {hosts}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
}

impl LlmStub {
    /// Starts a stub on `ip` (a free port) whose model answers with `script`,
    /// one bash command per turn, then [`SUBMIT`].
    pub async fn start(ip: &str, script: &[&str]) -> LlmStub {
        let listener = TcpListener::bind((ip, 0))
            .await
            .unwrap_or_else(|e| panic!("llm stub: cannot listen on {ip}: {e}"));
        let addr = listener.local_addr().expect("llm stub: local address");
        let shared = Arc::new(Shared {
            script: script.iter().map(|s| s.to_string()).collect(),
            requests: Mutex::new(Vec::new()),
        });
        let app = Router::new()
            .fallback(handle)
            .layer(DefaultBodyLimit::max(64 * 1024 * 1024))
            .with_state(shared.clone());
        let tx = crate::serve_until_told(listener, app);
        LlmStub {
            shared,
            addr,
            shutdown: Some(tx),
        }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The base URL an agent container uses: `http://host.docker.internal:PORT/v1`.
    pub fn container_base_url(&self) -> String {
        format!("http://host.docker.internal:{}/v1", self.port())
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<StubRequest> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// The chat completion requests so far.
    pub fn chats(&self) -> Vec<StubRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == "POST" && r.path == "/v1/chat/completions")
            .collect()
    }

    /// A short account of the requests, for assertion messages.
    pub fn summary(&self) -> String {
        let reqs = self.requests();
        let mut s = format!("{} request(s) to the model stub:", reqs.len());
        for r in &reqs {
            s.push_str(&format!(
                "\n  {} {} ({} messages)",
                r.method,
                r.path,
                r.messages().len()
            ));
        }
        s
    }
}

impl Drop for LlmStub {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Response {
    let req = StubRequest {
        method: method.to_string(),
        path: uri.path().to_string(),
        authorization: headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    };
    let chat = method == Method::POST && req.path == "/v1/chat/completions";
    let turn = req
        .messages()
        .iter()
        .filter(|m| m["role"] == "assistant")
        .count();
    let model = req.body["model"].as_str().unwrap_or("stub").to_string();
    shared.requests.lock().unwrap().push(req);
    if !chat {
        return (
            StatusCode::NOT_FOUND,
            "the model stub serves /v1/chat/completions",
        )
            .into_response();
    }
    let command = shared
        .script
        .get(turn)
        .map_or(SUBMIT, String::as_str)
        .to_string();
    Json(json!({
        "id": format!("chatcmpl-stub-{turn}"),
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [{
            "index": 0,
            "finish_reason": "tool_calls",
            "message": {
                "role": "assistant",
                "content": format!("Step {turn}."),
                "tool_calls": [{
                    "id": format!("call_{turn}"),
                    "type": "function",
                    "function": {
                        "name": "bash",
                        "arguments": json!({ "command": command }).to_string(),
                    },
                }],
            },
        }],
        "usage": { "prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2 },
    }))
    .into_response()
}
