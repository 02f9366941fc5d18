//! Test-only: an in-process server that speaks the AWS wire protocols cloud-bridge
//! uses, for the real SDK clients to call on loopback (behind the `test-util`
//! feature). It serves Bedrock Converse (`POST /model/{modelId}/converse`) and IoT
//! Data Publish (`POST /topics/{topic}`) and GetThingShadow
//! (`GET /things/{thing}/shadow?name=`, from documents the test puts), verifies each request's SigV4 signature
//! by recomputing it with `aws-sigv4` from the static test credentials, checks the
//! structure of every Converse request (roles alternate, tool results answer the
//! tool uses just made, the system blocks are there), and answers from a script.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};

pub const ACCESS_KEY: &str = "AKIDTESTSTANDIN00001";
pub const SECRET_KEY: &str = "stand-in-secret-key-that-must-never-reach-a-prompt";
pub const REGION: &str = "us-east-1";

/// What the stand-in does for one Converse request.
pub enum Step {
    /// A 200 with this Converse response body.
    Reply(Value),
    /// An AWS error: status and `x-amzn-errortype`.
    Error(u16, &'static str),
    /// Waits, then does the inner step.
    Delay(Duration, Box<Step>),
}

/// A scripted model: each request is answered by the next closure, which sees the
/// request body.
pub type Script = Box<dyn Fn(&Value) -> Step + Send + Sync>;

/// One request the stand-in saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    /// The model id or topic, percent-decoded.
    pub target: String,
    pub query: std::collections::HashMap<String, String>,
    pub body: Bytes,
    pub signature_ok: bool,
}

#[derive(Default)]
struct Inner {
    /// Shadow documents by (thing, shadow name).
    shadows: std::collections::HashMap<(String, String), Value>,
    script: VecDeque<Script>,
    seen: Vec<Seen>,
    violations: Vec<String>,
}

#[derive(Clone)]
pub struct AwsStandIn {
    pub addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
}

impl AwsStandIn {
    /// Starts on a free loopback port, in the current tokio runtime.
    pub async fn start() -> AwsStandIn {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = Router::new()
            .route("/model/{model}/converse", post(converse))
            .route("/topics/{*topic}", post(publish))
            .route("/things/{thing}/shadow", axum::routing::get(get_shadow))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        AwsStandIn { addr, inner }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Appends to the script.
    pub fn then(&self, step: impl Fn(&Value) -> Step + Send + Sync + 'static) -> &Self {
        self.inner.lock().unwrap().script.push_back(Box::new(step));
        self
    }

    /// Applies a device's shadow update (`{"state": {"reported": ...}}`, as it
    /// publishes it on `$aws/things/{thing}/shadow/name/{name}/update`) the way
    /// the Device Shadow service does: the reported state replaces the old one,
    /// the version goes up, and the document is stamped.
    pub fn accept_shadow_update(&self, thing: &str, name: &str, update: &Value) {
        let mut inner = self.inner.lock().unwrap();
        let key = (thing.to_string(), name.to_string());
        let version = inner.shadows.get(&key).and_then(|d| d["version"].as_u64()).unwrap_or(0) + 1;
        let document = json!({
            "state": { "reported": update["state"]["reported"].clone() },
            "metadata": {},
            "version": version,
            "timestamp": jiff::Timestamp::now().as_second(),
        });
        inner.shadows.insert(key, document);
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.inner.lock().unwrap().seen.clone()
    }

    /// Requests whose Converse body broke the protocol's rules (empty is good).
    pub fn violations(&self) -> Vec<String> {
        self.inner.lock().unwrap().violations.clone()
    }

    pub fn unused_steps(&self) -> usize {
        self.inner.lock().unwrap().script.len()
    }

    /// A Bedrock client on this stand-in with the static test credentials and
    /// the SDK's retries off (the provider retries).
    pub fn bedrock_client(&self) -> aws_sdk_bedrockruntime::Client {
        let config = aws_sdk_bedrockruntime::Config::builder()
            .behavior_version(aws_sdk_bedrockruntime::config::BehaviorVersion::latest())
            .region(aws_sdk_bedrockruntime::config::Region::new(REGION))
            .credentials_provider(credentials())
            .endpoint_url(self.endpoint())
            .retry_config(aws_sdk_bedrockruntime::config::retry::RetryConfig::disabled())
            .build();
        aws_sdk_bedrockruntime::Client::from_conf(config)
    }

    pub fn iot_data_client(&self) -> aws_sdk_iotdataplane::Client {
        let config = aws_sdk_iotdataplane::Config::builder()
            .behavior_version(aws_sdk_iotdataplane::config::BehaviorVersion::latest())
            .region(aws_sdk_iotdataplane::config::Region::new(REGION))
            .credentials_provider(credentials())
            .endpoint_url(self.endpoint())
            .build();
        aws_sdk_iotdataplane::Client::from_conf(config)
    }
}

pub fn credentials() -> aws_credential_types::Credentials {
    aws_credential_types::Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "stand-in")
}

/// A Converse reply with text.
pub fn text_reply(text: &str) -> Value {
    json!({
        "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
        "stopReason": "end_turn",
        "usage": {"inputTokens": 120, "outputTokens": 20, "totalTokens": 140},
        "metrics": {"latencyMs": 5}
    })
}

/// A Converse reply asking for one tool call.
pub fn tool_reply(id: &str, name: &str, input: Value) -> Value {
    json!({
        "output": {"message": {"role": "assistant", "content": [
            {"text": "Let me check."},
            {"toolUse": {"toolUseId": id, "name": name, "input": input}}
        ]}},
        "stopReason": "tool_use",
        "usage": {"inputTokens": 150, "outputTokens": 30, "totalTokens": 180},
        "metrics": {"latencyMs": 5}
    })
}

/// The JSON of the last tool result in a Converse request.
pub fn last_tool_result(request: &Value) -> Value {
    request["messages"]
        .as_array()
        .and_then(|m| m.last())
        .and_then(|m| m["content"].as_array())
        .and_then(|c| c.iter().rev().find_map(|b| b.get("toolResult")))
        .and_then(|r| r["content"].as_array())
        .and_then(|c| c.iter().find_map(|b| b.get("json").cloned()))
        .unwrap_or(Value::Null)
}

/// Recomputes the SigV4 signature of a request and compares it with the one sent.
pub fn signature_matches(method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8], service: &str) -> bool {
    let Some(auth) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let field = |name: &str| {
        auth.split([',', ' '])
            .find_map(|part| part.trim().strip_prefix(name))
            .map(str::to_string)
    };
    let (Some(sent), Some(signed), Some(scope)) = (field("Signature="), field("SignedHeaders="), field("Credential="))
    else {
        return false;
    };
    if !scope.starts_with(ACCESS_KEY) || !scope.ends_with(&format!("/{REGION}/{service}/aws4_request")) {
        return false;
    }
    let Some(time) = headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .and_then(|d| jiff::fmt::strtime::parse("%Y%m%dT%H%M%SZ", d).ok())
        .and_then(|t| t.to_datetime().ok())
        .and_then(|dt| dt.to_zoned_datetime(jiff::tz::TimeZone::UTC).ok())
    else {
        return false;
    };
    let time = SystemTime::UNIX_EPOCH + Duration::from_secs(time.timestamp().as_second().max(0) as u64);
    let names: Vec<&str> = signed.split(';').collect();
    let pairs: Vec<(&str, &str)> = headers
        .iter()
        .filter(|(name, _)| names.contains(&name.as_str()))
        .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?)))
        .collect();
    let identity = credentials().into();
    let Ok(params) = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(REGION)
        .name(service)
        .time(time)
        .settings(aws_sigv4::http_request::SigningSettings::default())
        .build()
    else {
        return false;
    };
    let params = params.into();
    let path_and_query = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let Ok(request) = aws_sigv4::http_request::SignableRequest::new(
        method.as_str(),
        format!(
            "http://{}{}",
            headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or("localhost"),
            path_and_query
        ),
        pairs.into_iter(),
        aws_sigv4::http_request::SignableBody::Bytes(body),
    ) else {
        return false;
    };
    match aws_sigv4::http_request::sign(request, &params) {
        Ok(output) => output.signature() == sent,
        Err(_) => false,
    }
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&text[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).to_string()
}

/// The rules of a Converse request that the server (and Bedrock) enforce.
pub fn converse_violations(body: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let Some(messages) = body["messages"].as_array() else {
        return vec!["no messages".into()];
    };
    if body["system"].as_array().is_none_or(|s| s.is_empty()) {
        out.push("no system blocks".into());
    }
    let mut last_role = "";
    let mut pending_tool_uses: Vec<String> = Vec::new();
    for (i, message) in messages.iter().enumerate() {
        let role = message["role"].as_str().unwrap_or("");
        if i == 0 && role != "user" {
            out.push("the first message is not the user's".into());
        }
        if role == last_role {
            out.push(format!("message {i}: two `{role}` messages in a row"));
        }
        let content = message["content"].as_array().cloned().unwrap_or_default();
        if content.is_empty() {
            out.push(format!("message {i}: no content"));
        }
        let results: Vec<String> = content
            .iter()
            .filter_map(|b| b["toolResult"]["toolUseId"].as_str().map(str::to_string))
            .collect();
        if role == "user" {
            let mut wanted = pending_tool_uses.clone();
            wanted.sort();
            let mut got = results.clone();
            got.sort();
            if wanted != got {
                out.push(format!(
                    "message {i}: tool results {got:?} do not answer the tool uses {wanted:?}"
                ));
            }
        } else if !results.is_empty() {
            out.push(format!("message {i}: tool results in an assistant message"));
        }
        pending_tool_uses = content
            .iter()
            .filter_map(|b| b["toolUse"]["toolUseId"].as_str().map(str::to_string))
            .collect();
        last_role = if role == "user" { "user" } else { "assistant" };
    }
    if last_role != "user" {
        out.push("the last message is not the user's".into());
    }
    out
}

async fn converse(
    State(inner): State<Arc<Mutex<Inner>>>,
    Path(model): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let signature_ok = signature_matches(&method, &uri, &headers, &body, "bedrock");
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let step = {
        let mut inner = inner.lock().unwrap();
        let mut violations = converse_violations(&parsed);
        if !signature_ok {
            violations.push("the SigV4 signature does not verify".into());
        }
        inner.violations.extend(violations);
        inner.seen.push(Seen {
            path: uri.path().to_string(),
            target: decode(&model),
            query: Default::default(),
            body: body.clone(),
            signature_ok,
        });
        inner.script.pop_front()
    };
    let Some(script) = step else {
        inner
            .lock()
            .unwrap()
            .violations
            .push("a request beyond the script".into());
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            [("x-amzn-errortype", "InternalServerException")],
            "{}",
        )
            .into_response();
    };
    let mut step = script(&parsed);
    loop {
        match step {
            Step::Reply(value) => {
                return (
                    StatusCode::OK,
                    [("content-type", "application/json")],
                    value.to_string(),
                )
                    .into_response()
            }
            Step::Error(status, kind) => {
                return (
                    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                    [("x-amzn-errortype", kind), ("content-type", "application/json")],
                    json!({"message": format!("stand-in {kind}")}).to_string(),
                )
                    .into_response()
            }
            Step::Delay(pause, inner_step) => {
                tokio::time::sleep(pause).await;
                step = *inner_step;
            }
        }
    }
}

async fn get_shadow(
    State(inner): State<Arc<Mutex<Inner>>>,
    Path(thing): Path<String>,
    Query(query): Query<std::collections::HashMap<String, String>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let signature_ok = signature_matches(&method, &uri, &headers, &[], "iotdata");
    let name = query.get("name").cloned().unwrap_or_default();
    let mut inner = inner.lock().unwrap();
    if !signature_ok {
        inner
            .violations
            .push("the SigV4 signature of a GetThingShadow does not verify".into());
    }
    inner.seen.push(Seen {
        path: uri.path().to_string(),
        target: format!("{thing}/{name}"),
        query,
        body: Bytes::new(),
        signature_ok,
    });
    if !signature_ok {
        return (
            StatusCode::FORBIDDEN,
            [("x-amzn-errortype", "ForbiddenException")],
            r#"{"message":"The request signature we calculated does not match the signature you provided."}"#,
        )
            .into_response();
    }
    match inner.shadows.get(&(thing.clone(), name.clone())) {
        Some(document) => (
            StatusCode::OK,
            [("content-type", "application/json")],
            document.to_string(),
        )
            .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            [("x-amzn-errortype", "ResourceNotFoundException")],
            json!({ "message": format!("No shadow exists with name: '{name}'") }).to_string(),
        )
            .into_response(),
    }
}

async fn publish(
    State(inner): State<Arc<Mutex<Inner>>>,
    Path(topic): Path<String>,
    Query(query): Query<std::collections::HashMap<String, String>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let signature_ok = signature_matches(&method, &uri, &headers, &body, "iotdata");
    let mut inner = inner.lock().unwrap();
    if !signature_ok {
        inner
            .violations
            .push("the SigV4 signature of a Publish does not verify".into());
    }
    inner.seen.push(Seen {
        path: uri.path().to_string(),
        target: decode(&topic),
        query,
        body,
        signature_ok,
    });
    (StatusCode::OK, [("content-type", "application/json")], "{}").into_response()
}
