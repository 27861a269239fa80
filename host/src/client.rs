//! A client for a running `host serve` (what `host call --remote` uses): plain HTTP/1.1 over TCP,
//! with the same function names and JSON arguments as a local call.

use http::{Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::Value;

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

    /// Send one request; returns the status and the whole body.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let mut chunks = Vec::new();
        let status = self
            .send_streaming(method, path, "application/json", body, |chunk| chunks.extend_from_slice(chunk))
            .await?;
        Ok((status, Bytes::from(chunks)))
    }

    /// Send one request and hand the answer's body to `on_chunk` piece by piece as it arrives.
    async fn send_streaming(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: Option<Vec<u8>>,
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
        let request =
            request.body(Full::new(Bytes::from(body.unwrap_or_default()))).map_err(|e| unreachable(e.to_string()))?;
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

    /// One API request (`path` from `/v1`): the body of a successful answer, or the API's error.
    pub async fn api(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<Result<Bytes, Failure>, ClientError> {
        let mut chunks = Vec::new();
        let status =
            self.send_streaming(method, path, content_type, Some(body), |c| chunks.extend_from_slice(c)).await?;
        if status.is_success() {
            return Ok(Ok(Bytes::from(chunks)));
        }
        self.failure(status, &chunks).map(Err)
    }

    /// A GET whose answer streams: `on_chunk` sees each piece (e.g. Server-Sent Events).
    pub async fn follow(&self, path: &str, on_chunk: impl FnMut(&[u8])) -> Result<StatusCode, ClientError> {
        self.send_streaming(Method::GET, path, "application/json", None, on_chunk).await
    }

    fn unexpected(&self, status: StatusCode, body: &[u8]) -> ClientError {
        ClientError::Unexpected {
            server: self.authority.clone(),
            status: status.as_u16(),
            body: String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
        }
    }

    /// Find the app of `function` (`APP/FUNCTION.EXPORT`, or searched among the server's apps).
    async fn resolve<'a>(&self, function: &'a str) -> Result<Result<(String, &'a str), Failure>, ClientError> {
        if let Some((app, function)) = function.split_once('/') {
            return Ok(Ok((app.to_string(), function)));
        }
        let (status, body) = self.send(Method::GET, "/v1/apps", None).await?;
        if !status.is_success() {
            return Ok(Err(self.failure(status, &body)?));
        }
        let apps: Value = serde_json::from_slice(&body).map_err(|_| self.unexpected(status, &body))?;
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

    /// Call `function` with JSON `args` (`null` for none) and return its JSON result, or the
    /// server's error.
    pub async fn call(&self, function: &str, args: &Value) -> Result<Result<Value, Failure>, ClientError> {
        self.invoke(function, args, "").await
    }

    /// Start `function` as a job (`?async=true`), or as a serial call (`?enqueue=true`) when
    /// `enqueue`: the answer holds its execution `id`.
    pub async fn start(
        &self,
        function: &str,
        args: &Value,
        enqueue: bool,
    ) -> Result<Result<Value, Failure>, ClientError> {
        self.invoke(function, args, if enqueue { "?enqueue=true" } else { "?async=true" }).await
    }

    /// `map` (body `{"inputs": ...}`) or `starmap` (body `{"args": [...]}`) on the server, which
    /// answers one JSON line per call as each ends; `on_outcome` sees each (`{"index", "ok"|"err"}`).
    pub async fn map(
        &self,
        function: &str,
        starmap: bool,
        inputs: &Value,
        mut on_outcome: impl FnMut(Value),
    ) -> Result<Result<(), Failure>, ClientError> {
        let (app, function) = match self.resolve(function).await? {
            Ok(found) => found,
            Err(failure) => return Ok(Err(failure)),
        };
        let (kind, field) = if starmap { ("starmap", "args") } else { ("map", "inputs") };
        let path = format!("/v1/apps/{}/functions/{}/{kind}?stream=true", encode(&app), encode(function));
        let body = serde_json::to_vec(&serde_json::json!({ field: inputs })).expect("JSON value serializes");
        let mut pending = Vec::new();
        let mut bad_line = None;
        let status = self
            .send_streaming(Method::POST, &path, "application/json", Some(body), |chunk| {
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

    async fn invoke(&self, function: &str, args: &Value, query: &str) -> Result<Result<Value, Failure>, ClientError> {
        let (app, function) = match self.resolve(function).await? {
            Ok(found) => found,
            Err(failure) => return Ok(Err(failure)),
        };
        let body = if args.is_null() { Vec::new() } else { serde_json::to_vec(args).expect("JSON value serializes") };
        let path = format!("/v1/apps/{}/functions/{}{query}", encode(&app), encode(function));
        let (status, body) = self.send(Method::POST, &path, Some(body)).await?;
        if status.is_success() {
            return serde_json::from_slice(&body).map(Ok).map_err(|_| self.unexpected(status, &body));
        }
        self.failure(status, &body).map(Err)
    }
}

/// Percent-encode a path segment or query value.
pub fn encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
