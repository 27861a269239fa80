//! The networked backend: every store on NATS JetStream, shared by every node connected to the
//! same cluster (`host serve --backend nats://…`).
//!
//! [`Nats`] is the connection every NATS store shares: a client, a JetStream context, the
//! replica count of the streams it creates and a namespace that prefixes their names (so several
//! deployments, or tests, can share one cluster). [`Bucket`] is a key-value bucket whose
//! compare-and-swap is safe on the clustered 2.9 servers that Debian ships (see its docs).
//! [`cluster::LocalCluster`] runs a cluster of `nats-server` processes on loopback for tests,
//! benchmarks and the README's local setup.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, stream};

mod bucket;
pub mod cluster;
mod events;
mod open_cache;

pub use bucket::{Bucket, Versioned, decode_key, encode_key};
pub use events::{EventLog, event_key, event_sequence};
pub use open_cache::OpenCache;

/// Why talking to NATS failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NatsError {
    /// The servers could not be reached, or refused the credentials.
    #[error("cannot connect to NATS at {urls}: {message}")]
    Connect {
        /// The addresses tried.
        urls: String,
        /// What went wrong.
        message: String,
    },
    /// A request failed; the text says which and why.
    #[error("NATS: {0}")]
    Request(String),
}

/// How to reach a NATS cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsOptions {
    /// Server addresses (`nats://HOST:PORT` or `HOST:PORT`); the client picks one and moves to
    /// another when it dies.
    pub urls: Vec<String>,
    /// Authentication token.
    pub token: Option<String>,
    /// User name and password.
    pub user: Option<(String, String)>,
    /// A `.creds` file (user JWT and nkey seed).
    pub creds_file: Option<PathBuf>,
    /// A PEM file of the CA that signed the servers' certificates (turns TLS on).
    pub tls_ca: Option<PathBuf>,
    /// Prefix of every stream and bucket name: deployments with different namespaces share
    /// nothing.
    pub namespace: String,
    /// Copies kept of every stream (1 to 5; 3 in a three-node cluster).
    pub replicas: usize,
}

/// The namespace when none is given.
pub const DEFAULT_NAMESPACE: &str = "host";

impl NatsOptions {
    /// Options for the servers of a `nats://HOST:PORT[,HOST:PORT...]` address list, with the
    /// default namespace and as many replicas as addresses (at most 3).
    pub fn parse(spec: &str) -> Result<NatsOptions, String> {
        let rest = spec.strip_prefix("nats://").ok_or_else(|| {
            format!("backend `{spec}`: expected `nats://HOST:PORT[,HOST:PORT...]` (or no backend: the embedded store)")
        })?;
        let urls: Vec<String> = rest.split(',').map(|a| format!("nats://{}", a.trim())).collect();
        for (url, addr) in urls.iter().zip(rest.split(',')) {
            let addr = addr.trim();
            let port = addr.rsplit_once(':').map(|(host, port)| (host, port.parse::<u16>()));
            if !matches!(port, Some((host, Ok(_))) if !host.is_empty()) {
                return Err(format!("backend `{spec}`: `{url}` is not HOST:PORT"));
            }
        }
        Ok(NatsOptions {
            replicas: urls.len().min(3),
            urls,
            token: None,
            user: None,
            creds_file: None,
            tls_ca: None,
            namespace: DEFAULT_NAMESPACE.into(),
        })
    }
}

/// A connection to a NATS cluster, shared by every NATS store of a host. Cheap to clone.
#[derive(Clone)]
pub struct Nats {
    /// The client.
    pub client: async_nats::Client,
    /// JetStream over the client.
    pub js: jetstream::Context,
    /// Copies kept of every stream created.
    pub replicas: usize,
    namespace: String,
    /// One lock per stream name being opened, see [`Nats::stream`].
    opening: Arc<std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
}

impl std::fmt::Debug for Nats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nats").field("namespace", &self.namespace).field("replicas", &self.replicas).finish()
    }
}

/// How long a request waits for its answer before it is retried.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a stream creation may take before it is tried again.
const CREATE_TIMEOUT: Duration = Duration::from_millis(750);

/// How long transient failures (a stream leader being elected, a node restarting) are retried.
pub const RETRY_FOR: Duration = Duration::from_secs(20);

impl Nats {
    /// Connect, failing with [`NatsError::Connect`] when no server answers in 10 seconds.
    pub async fn connect(options: &NatsOptions) -> Result<Nats, NatsError> {
        let failed = |message: String| NatsError::Connect { urls: options.urls.join(","), message };
        if !(1..=5).contains(&options.replicas) {
            return Err(failed(format!("replicas: {}, expected 1 to 5", options.replicas)));
        }
        let mut connect = async_nats::ConnectOptions::new()
            .name("host")
            .connection_timeout(Duration::from_secs(10))
            .request_timeout(Some(REQUEST_TIMEOUT))
            .max_reconnects(None);
        if let Some(token) = &options.token {
            connect = connect.token(token.clone());
        }
        if let Some((user, password)) = &options.user {
            connect = connect.user_and_password(user.clone(), password.clone());
        }
        if let Some(path) = &options.creds_file {
            connect = connect.credentials_file(path).await.map_err(|e| failed(format!("creds file {path:?}: {e}")))?;
        }
        if let Some(ca) = &options.tls_ca {
            connect = connect.add_root_certificates(ca.clone()).require_tls(true);
        }
        let client = connect.connect(options.urls.clone()).await.map_err(|e| failed(e.to_string()))?;
        let mut js = jetstream::new(client.clone());
        js.set_timeout(REQUEST_TIMEOUT);
        // `$JS.API.INFO` answers only where JetStream is on (newer clients' `query_account`
        // cannot parse a 2.9 server's answer, so the request is made raw).
        let info = client
            .request("$JS.API.INFO", bytes::Bytes::new())
            .await
            .map_err(|e| failed(format!("JetStream: {e} (is the server started with JetStream, `-js`?)")))?;
        if let Ok(serde_json::Value::Object(answer)) = serde_json::from_slice(&info.payload)
            && let Some(error) = answer.get("error")
        {
            return Err(failed(format!("JetStream: {error}")));
        }
        Ok(Nats {
            client,
            js,
            replicas: options.replicas,
            namespace: options.namespace.clone(),
            opening: Arc::default(),
        })
    }

    /// The name of a stream or bucket of `kind` for `parts` (an app, a store, ...): the
    /// namespace, the kind and each part, escaped by [`encode_name`] and joined by `_`.
    pub fn name(&self, kind: &str, parts: &[&str]) -> String {
        let mut name = format!("{}_{kind}", encode_name(&self.namespace));
        for part in parts {
            name.push('_');
            name.push_str(&encode_name(part));
        }
        name
    }

    /// The stream of `config`, created if missing. Racing creations of one new stream (tasks of
    /// this process, or other nodes) made all but one wait for the request timeout (5 s) on a
    /// 2.9 cluster, which the first calls on a fresh store paid: tasks of this process take
    /// turns, and a creation not answered soon is abandoned for a fresh lookup.
    pub async fn stream(&self, config: stream::Config) -> Result<stream::Stream, NatsError> {
        let lock = self.opening.lock().expect("stream lock map").entry(config.name.clone()).or_default().clone();
        let _turn = lock.lock().await;
        // Nodes creating one stream at once: a creation whose answer does not come soon is
        // abandoned, and the stream looked up again (another node's creation made it).
        self.retry(|| async {
            if let Ok(stream) = self.js.get_stream(&config.name).await {
                return Ok(stream);
            }
            match tokio::time::timeout(CREATE_TIMEOUT, self.js.get_or_create_stream(config.clone())).await {
                Ok(created) => created.map_err(|e| e.to_string()),
                Err(_) => Err(format!("creating stream {}: timed out", config.name)),
            }
        })
        .await
    }

    /// Run `op` until it succeeds, retrying failures that a cluster recovers from by itself
    /// (no stream leader yet, a node restarting, a request timing out) for up to [`RETRY_FOR`].
    /// A write retried this way must be idempotent: give it a message id.
    pub async fn retry<T, E, F, Fut>(&self, mut op: F) -> Result<T, NatsError>
    where
        E: std::fmt::Display,
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, E>>,
    {
        let start = std::time::Instant::now();
        let mut pause = Duration::from_millis(50);
        loop {
            match op().await {
                Ok(value) => return Ok(value),
                Err(e) => {
                    let text = e.to_string();
                    if !transient(&text) || start.elapsed() > RETRY_FOR {
                        return Err(NatsError::Request(text));
                    }
                    tracing::debug!(error = %text, "NATS request failed, retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
            }
        }
    }
}

/// Whether a failure is one a cluster recovers from by itself.
pub fn transient(error: &str) -> bool {
    let error = error.to_ascii_lowercase();
    [
        "timed out",
        "timeout",
        "no responders",
        "503",
        "no stream found",
        "not connected",
        "disconnected",
        "leader",
        "broken pipe",
        "connection",
        // A cluster that just formed, or lost a server, before its peers are known again.
        "no suitable peers",
    ]
    .iter()
    .any(|marker| error.contains(marker))
}

/// A name part escaped for stream and bucket names, which allow only `[A-Za-z0-9_-]`: other
/// bytes (and `_`, the separator) become `-XX`, `-` itself `--`, so that distinct parts never
/// give the same name.
pub fn encode_name(part: &str) -> String {
    let mut out = String::with_capacity(part.len());
    for byte in part.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' => out.push(byte as char),
            b'-' => out.push_str("--"),
            _ => out.push_str(&format!("-{byte:02X}")),
        }
    }
    out
}

/// A fresh random id (32 hex digits), for message ids that make a retried write idempotent.
pub fn random_id() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the OS random source works");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
pub(crate) mod testing;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_escaped_and_distinct() {
        assert_eq!(encode_name("shop"), "shop");
        assert_eq!(encode_name("my-app"), "my--app");
        assert_eq!(encode_name("a_b"), "a-5Fb");
        assert_ne!(encode_name("a-5Fb"), encode_name("a_b"));
        assert_ne!(encode_name("a.b"), encode_name("a-b"));
    }

    #[test]
    fn backend_addresses_are_checked() {
        let options = NatsOptions::parse("nats://127.0.0.1:4222,127.0.0.1:4223").unwrap();
        assert_eq!(options.urls, ["nats://127.0.0.1:4222", "nats://127.0.0.1:4223"]);
        assert_eq!(options.replicas, 2);
        assert!(NatsOptions::parse("redis://x:1").unwrap_err().contains("expected `nats://HOST:PORT"));
        assert!(NatsOptions::parse("nats://127.0.0.1").unwrap_err().contains("`nats://127.0.0.1` is not HOST:PORT"));
    }
}
