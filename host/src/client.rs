//! A client for a running `host serve` (what the CLI's `--remote` uses): plain HTTP/1.1 over TCP,
//! with the same function names and JSON arguments as a local call, and the execution and item
//! operations of the REST API.

use std::time::{Duration, Instant};

use http::{Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::Value;

use crate::server::routes::{Route, with_query};

/// The answer to one API request: the server's value or its error (`Ok`), or why the server could
/// not be asked (`Err`).
pub type Reply<T> = Result<Result<T, Failure>, ClientError>;

/// The content type of requests without a body of their own.
const JSON: &str = "application/json";

/// The server could not be reached or gave an answer that is not the API's.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URL is not `http://HOST[:PORT][/PREFIX]`.
    #[error("invalid server URL `{url}`: {reason}")]
    BadUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Connecting or talking to the server failed.
    #[error("cannot reach {server}: {message}")]
    Unreachable {
        /// `host:port`.
        server: String,
        /// The I/O or HTTP error.
        message: String,
    },
    /// The server answered something that is not the host API.
    #[error("unexpected answer from {server} ({status}): {body}")]
    Unexpected {
        /// `host:port`.
        server: String,
        /// The HTTP status.
        status: u16,
        /// The start of the body.
        body: String,
    },
}

/// A call the server refused or that failed, as the API's JSON error describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// The HTTP status.
    pub status: u16,
    /// The stable error code (`bad-argument`, `timeout`, `guest-error`, ...).
    pub code: String,
    /// The server's message, with the guest's error value for `guest-error`.
    pub message: String,
    /// Whether the input was at fault (400, 404): `host call` exits with 2 then, else 1.
    pub bad_input: bool,
}

/// A connection recipe for one server.
pub struct Client {
    authority: String,
    prefix: String,
    token: Option<String>,
}

impl Client {
    /// A client for `url` (`http://127.0.0.1:8080`, optionally with a path prefix).
    pub fn new(url: &str, token: Option<String>) -> Result<Client, ClientError> {
        let bad = |reason: &str| ClientError::BadUrl { url: url.to_string(), reason: reason.to_string() };
        let uri: Uri = url.parse().map_err(|e: http::uri::InvalidUri| bad(&e.to_string()))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(_) => {
                return Err(bad("only http:// is supported (put TLS in a reverse proxy in front of the server)"));
            }
            None => return Err(bad("expected http://HOST:PORT")),
        }
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        let port = authority.port_u16().unwrap_or(80);
        Ok(Client {
            authority: format!("{}:{port}", authority.host()),
            prefix: uri.path().trim_end_matches('/').to_string(),
            token,
        })
    }

    /// Send one request and hand the answer's body to `on_chunk` piece by piece as it arrives.
    async fn send_streaming(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
        mut on_chunk: impl FnMut(&[u8]),
    ) -> Result<StatusCode, ClientError> {
        let unreachable = |message: String| ClientError::Unreachable { server: self.authority.clone(), message };
        let stream = tokio::net::TcpStream::connect(&self.authority).await.map_err(|e| unreachable(e.to_string()))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        tokio::spawn(connection);
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.prefix))
            .header(header::HOST, &self.authority)
            .header(header::CONTENT_TYPE, content_type)
            // Media results come back as JSON too (base64), as a local `host call` prints them.
            .header(header::ACCEPT, "application/json");
        if let Some(token) = &self.token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request.body(Full::new(Bytes::from(body))).map_err(|e| unreachable(e.to_string()))?;
        let response = sender.send_request(request).await.map_err(|e| unreachable(e.to_string()))?;
        let status = response.status();
        let mut body = response.into_body();
        while let Some(frame) = body.frame().await {
            if let Some(data) = frame.map_err(|e| unreachable(e.to_string()))?.data_ref() {
                on_chunk(data);
            }
        }
        Ok(status)
    }

    /// One request: the answer's status and whole body.
    async fn exchange(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<(StatusCode, Vec<u8>), ClientError> {
        let mut chunks = Vec::new();
        let status = self.send_streaming(method, path, content_type, body, |c| chunks.extend_from_slice(c)).await?;
        Ok((status, chunks))
    }

    /// One API request: the body of a successful answer, or the API's error.
    async fn request(&self, method: Method, path: &str, content_type: &str, body: Vec<u8>) -> Reply<Bytes> {
        let (status, body) = self.exchange(method, path, content_type, body).await?;
        if status.is_success() {
            return Ok(Ok(Bytes::from(body)));
        }
        self.failure(status, &body).map(Err)
    }

    /// [`Client::request`] whose successful answer is JSON.
    async fn request_json(&self, method: Method, path: &str, content_type: &str, body: Vec<u8>) -> Reply<Value> {
        let (status, body) = self.exchange(method, path, content_type, body).await?;
        if !status.is_success() {
            return self.failure(status, &body).map(Err);
        }
        serde_json::from_slice(&body).map(Ok).map_err(|_| self.unexpected(status, &body))
    }

    fn unexpected(&self, status: StatusCode, body: &[u8]) -> ClientError {
        ClientError::Unexpected {
            server: self.authority.clone(),
            status: status.as_u16(),
            body: String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
        }
    }

    fn failure(&self, status: StatusCode, body: &[u8]) -> Result<Failure, ClientError> {
        let error: Value = serde_json::from_slice(body).map_err(|_| self.unexpected(status, body))?;
        let (Some(code), Some(message)) = (error["code"].as_str(), error["message"].as_str()) else {
            return Err(self.unexpected(status, body));
        };
        Ok(Failure {
            status: status.as_u16(),
            code: code.to_string(),
            message: message.to_string(),
            bad_input: matches!(status, StatusCode::BAD_REQUEST | StatusCode::NOT_FOUND),
        })
    }

    /// Find the app of `function` (`APP/FUNCTION.EXPORT`, or searched among the server's apps).
    async fn resolve<'a>(&self, function: &'a str) -> Reply<(String, &'a str)> {
        if let Some((app, function)) = function.split_once('/') {
            return Ok(Ok((app.to_string(), function)));
        }
        let apps = match self.request_json(Method::GET, &Route::ListApps.path(&[]), JSON, Vec::new()).await? {
            Ok(apps) => apps,
            Err(failure) => return Ok(Err(failure)),
        };
        let mut found = Vec::new();
        for app in apps.as_array().into_iter().flatten() {
            let names: Vec<&str> =
                app["functions"].as_array().into_iter().flatten().filter_map(|f| f["name"].as_str()).collect();
            let single = names.iter().filter(|n| n.split_once('.').is_some_and(|(c, _)| c == function)).count() == 1;
            if names.contains(&function) || single {
                found.push(app["name"].as_str().unwrap_or_default().to_string());
            }
        }
        match found.as_slice() {
            [app] => Ok(Ok((app.clone(), function))),
            [] => Ok(Err(Failure {
                status: 404,
                code: "unknown-function".into(),
                message: format!("no app on the server has a function `{function}`"),
                bad_input: true,
            })),
            many => Ok(Err(Failure {
                status: 400,
                code: "ambiguous-function".into(),
                message: format!("apps {} all have `{function}`: write APP/{function}", many.join(", ")),
                bad_input: true,
            })),
        }
    }

    /// Call `function` with JSON `args` (`null` for none) and return its JSON result, or the
    /// server's error.
    pub async fn call(&self, function: &str, args: &Value) -> Reply<Value> {
        self.invoke(function, args, None).await
    }

    /// Start `function` as a job (`?async=true`), or as a serial call (`?enqueue=true`) when
    /// `enqueue`: the answer holds its execution `id`.
    pub async fn start(&self, function: &str, args: &Value, enqueue: bool) -> Reply<Value> {
        self.invoke(function, args, Some(if enqueue { "enqueue" } else { "async" })).await
    }

    /// `map` (body `{"inputs": ...}`) or `starmap` (body `{"args": [...]}`) on the server, which
    /// answers one JSON line per call as each ends; `on_outcome` sees each (`{"index", "ok"|"err"}`).
    pub async fn map(
        &self,
        function: &str,
        starmap: bool,
        inputs: &Value,
        mut on_outcome: impl FnMut(Value),
    ) -> Reply<()> {
        let (app, function) = match self.resolve(function).await? {
            Ok(found) => found,
            Err(failure) => return Ok(Err(failure)),
        };
        let (route, field) = if starmap { (Route::Starmap, "args") } else { (Route::Map, "inputs") };
        let path = with_query(route.path(&[&app, function]), &[("stream", Some("true"))]);
        let body = serde_json::to_vec(&serde_json::json!({ field: inputs })).expect("JSON value serializes");
        let mut pending = Vec::new();
        let mut bad_line = None;
        let status = self
            .send_streaming(Method::POST, &path, JSON, body, |chunk| {
                pending.extend_from_slice(chunk);
                while let Some(end) = pending.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=end).collect();
                    match serde_json::from_slice(&line) {
                        Ok(outcome) => on_outcome(outcome),
                        Err(_) => bad_line = Some(line),
                    }
                }
            })
            .await?;
        if !status.is_success() {
            return self.failure(status, &pending).map(Err);
        }
        match bad_line {
            Some(line) => Err(self.unexpected(status, &line)),
            None => Ok(Ok(())),
        }
    }

    /// Call `function`, or start it as a job with the query flag `start` (`async`, `enqueue`).
    async fn invoke(&self, function: &str, args: &Value, start: Option<&str>) -> Reply<Value> {
        let (app, function) = match self.resolve(function).await? {
            Ok(found) => found,
            Err(failure) => return Ok(Err(failure)),
        };
        let body = if args.is_null() { Vec::new() } else { serde_json::to_vec(args).expect("JSON value serializes") };
        let path = match start {
            Some(flag) => with_query(Route::Call.path(&[&app, function]), &[(flag, Some("true"))]),
            None => Route::Call.path(&[&app, function]),
        };
        self.request_json(Method::POST, &path, JSON, body).await
    }

    /// Execution records, newest first: at most `limit`, filtered by the `filters` that have a
    /// value (`app`, `function`, `trigger`, `status`).
    pub async fn executions(&self, limit: usize, filters: &[(&str, Option<&str>)]) -> Reply<Value> {
        let limit = limit.to_string();
        let query = [&[("limit", Some(limit.as_str()))], filters].concat();
        self.request_json(Method::GET, &with_query(Route::ListExecutions.path(&[]), &query), JSON, Vec::new()).await
    }

    /// The execution's record once it is final, or the last one seen after `timeout`.
    pub async fn wait(&self, id: &str, timeout: Duration) -> Reply<Value> {
        // The server waits at most 5 minutes per request.
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now()).min(Duration::from_secs(300));
            let wait = format!("{}ms", left.as_millis());
            let path = with_query(Route::ShowExecution.path(&[id]), &[("wait", Some(&wait))]);
            let record = match self.request_json(Method::GET, &path, JSON, Vec::new()).await? {
                Ok(record) => record,
                Err(failure) => return Ok(Err(failure)),
            };
            let finished = !matches!(record["status"].as_str(), Some("queued" | "running"));
            if finished || left.is_zero() || Instant::now() >= deadline {
                return Ok(Ok(record));
            }
        }
    }

    /// Cancel a queued or running execution; its record.
    pub async fn cancel(&self, id: &str) -> Reply<Value> {
        self.request_json(Method::POST, &Route::CancelExecution.path(&[id]), JSON, Vec::new()).await
    }

    /// An execution's logs so far.
    pub async fn logs(&self, id: &str) -> Reply<Bytes> {
        self.request(Method::GET, &Route::ExecutionLogs.path(&[id]), "text/plain", Vec::new()).await
    }

    /// Follow an execution's logs until it ends: `on_log` sees each line as it comes (the `log`
    /// events of the Server-Sent Events stream). Returns the answer's status.
    pub async fn follow_logs(&self, id: &str, mut on_log: impl FnMut(&str)) -> Result<StatusCode, ClientError> {
        let path = with_query(Route::ExecutionLogs.path(&[id]), &[("follow", Some("true"))]);
        let (mut pending, mut event) = (String::new(), String::new());
        self.send_streaming(Method::GET, &path, JSON, Vec::new(), |chunk| {
            pending.push_str(&String::from_utf8_lossy(chunk));
            while let Some(end) = pending.find('\n') {
                let line: String = pending.drain(..=end).collect();
                let line = line.trim_end_matches(['\n', '\r']);
                if let Some(name) = line.strip_prefix("event: ") {
                    event = name.to_string();
                } else if let Some(data) = line.strip_prefix("data: ").or(line.strip_prefix("data:"))
                    && event == "log"
                {
                    on_log(data);
                }
            }
        })
        .await
    }

    /// Upload `data` as item `name` in folder `dir` of a dataset (its mimetype guessed from the
    /// name); the new item.
    pub async fn upload(&self, app: &str, dataset: &str, dir: &str, name: &str, data: Vec<u8>) -> Reply<Value> {
        let path = with_query(Route::Upload.path(&[app, dataset]), &[("dir", Some(dir)), ("name", Some(name))]);
        self.request_json(Method::POST, &path, crate::mimetype::guess(name), data).await
    }

    /// One page of a dataset's items (`{"items", "cursor"}`): at most `limit`, filtered by the
    /// `query` pairs that have a value (`dir`, `mimetype`, `cursor`).
    pub async fn items(&self, app: &str, dataset: &str, limit: u32, query: &[(&str, Option<&str>)]) -> Reply<Value> {
        let limit = limit.to_string();
        let query = [&[("limit", Some(limit.as_str()))], query].concat();
        self.request_json(Method::GET, &with_query(Route::ListItems.path(&[app, dataset]), &query), JSON, Vec::new())
            .await
    }

    /// One item, as the server's JSON text.
    pub async fn item(&self, app: &str, dataset: &str, id: &str) -> Reply<Bytes> {
        self.request(Method::GET, &Route::ShowItem.path(&[app, dataset, id]), JSON, Vec::new()).await
    }

    /// One item's bytes.
    pub async fn download(&self, app: &str, dataset: &str, id: &str) -> Reply<Bytes> {
        self.request(Method::GET, &Route::Download.path(&[app, dataset, id]), JSON, Vec::new()).await
    }

    /// Deploy a bundle (`host deploy`) as the next version of `app`.
    pub async fn deploy(&self, app: &str, bundle: Vec<u8>) -> Reply<Value> {
        self.request_json(Method::PUT, &Route::Deploy.path(&[app]), "application/octet-stream", bundle).await
    }

    /// Every deployed version of `app` and the one running.
    pub async fn versions(&self, app: &str) -> Reply<Value> {
        self.request_json(Method::GET, &Route::Versions.path(&[app]), JSON, Vec::new()).await
    }

    /// Run `version` of `app` again (`None`: the one before the running one).
    pub async fn rollback(&self, app: &str, version: Option<u64>) -> Reply<Value> {
        let body = version.map(|v| serde_json::json!({ "version": v }).to_string()).unwrap_or_default();
        self.request_json(Method::POST, &Route::Rollback.path(&[app]), JSON, body.into_bytes()).await
    }

    /// Stop the deployed `app` and forget its versions; with `purge`, delete its data too (the
    /// answer says how much).
    pub async fn undeploy(&self, app: &str, purge: bool) -> Reply<Bytes> {
        let path = with_query(Route::Undeploy.path(&[app]), &[("purge", purge.then_some("true"))]);
        self.request(Method::DELETE, &path, JSON, Vec::new()).await
    }
}
