//! `wasi:http/outgoing-handler`: a function reaches the hosts its `grants.http` lists, and nothing
//! else. `wasi:http` is linked for every function (with WASI, in `call.rs`) so that components
//! built for `wasmtime serve` or Spin instantiate unchanged; what a request may reach is decided
//! here, before anything is resolved or connected: the grant, then every address the name
//! resolves to (no loopback, private or link-local address unless the grant names it), then the
//! app's `[outbound]` timeouts and limits. Each request is counted in the metrics and noted in the
//! call's logs (method, host, status, duration; never headers or bodies).

mod send;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use wasmtime::component::{Linker, ResourceTable};
use wasmtime_wasi_http::{RequestOptions, WasiBody, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks};

use super::{CallParts, Capability, Setup};
use crate::manifest::{HttpGrant, OutboundSpec};
use crate::metrics::Metrics;

type HttpError = wasmtime_wasi_http::Error;
type IoFuture = Box<dyn Future<Output = Result<(), HttpError>> + Send>;
type SendFuture = Box<dyn Future<Output = Result<(http::Response<WasiBody>, IoFuture), HttpError>> + Send>;

/// Where a call's notes about its outbound requests go (its logs).
pub type Notes = Arc<dyn Fn(&str) + Send + Sync>;

/// An app's `[outbound]` settings, ready to use: the extra TLS roots are read when the app is
/// loaded (so a bad `ca-file` fails the load), the TLS configuration is made on first use.
pub struct AppOutbound {
    spec: OutboundSpec,
    extra_roots: Vec<rustls::pki_types::CertificateDer<'static>>,
    tls: OnceLock<Arc<rustls::ClientConfig>>,
}

impl AppOutbound {
    /// The settings of `spec`, with its `ca-file` read; the error names the file and what is wrong.
    pub fn new(spec: &OutboundSpec) -> Result<AppOutbound, String> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let mut extra_roots = Vec::new();
        if let Some(file) = &spec.ca_file {
            let bad = |why: String| format!("outbound.ca-file {}: {why}", file.display());
            let certs = CertificateDer::pem_file_iter(file).map_err(|e| bad(e.to_string()))?;
            extra_roots = certs.collect::<Result<_, _>>().map_err(|e| bad(e.to_string()))?;
            if extra_roots.is_empty() {
                return Err(bad("no PEM certificate in it".into()));
            }
        }
        Ok(AppOutbound { spec: spec.clone(), extra_roots, tls: OnceLock::new() })
    }

    /// The TLS client configuration: the system's roots plus the app's `ca-file`.
    fn tls(&self) -> Arc<rustls::ClientConfig> {
        self.tls.get_or_init(|| send::tls_config(&self.extra_roots)).clone()
    }
}

/// A function's outbound HTTP context: its grant, its app's settings, where it is counted.
#[derive(Clone)]
pub struct Outbound(Arc<Function>);

struct Function {
    app: String,
    function: String,
    grant: HttpGrant,
    settings: Arc<AppOutbound>,
    metrics: Arc<Metrics>,
}

impl Capability for Outbound {
    /// Built for every function, granted or not, so that refused requests are counted and noted
    /// with the function's name too.
    fn build(setup: &Setup<'_>) -> Option<Outbound> {
        Some(Outbound(Arc::new(Function {
            app: setup.app.into(),
            function: setup.function.into(),
            grant: setup.grants.http.clone(),
            settings: setup.outbound.clone(),
            metrics: setup.metrics.clone(),
        })))
    }

    /// Nothing to link: `wasi:http` is linked with WASI for every function (see the module doc);
    /// the call's [`Http`] state reaches this context.
    fn add_to_linker<T: CallParts>(_linker: &mut Linker<T>) -> wasmtime::Result<()> {
        Ok(())
    }
}

impl Outbound {
    /// The hosts the function may reach.
    pub fn grant(&self) -> &HttpGrant {
        &self.0.grant
    }
}

/// The `wasi:http` state of one call.
pub struct Http {
    ctx: WasiHttpCtx,
    hooks: Outgoing,
}

impl Http {
    /// The state of a call of the function `outbound` belongs to (none: every request is refused);
    /// its notes about requests go to `notes`.
    pub fn new(outbound: Option<&Outbound>, notes: Notes) -> Http {
        let hooks = Outgoing { outbound: outbound.cloned(), in_flight: Arc::default(), notes };
        Http { ctx: WasiHttpCtx::new(), hooks }
    }

    /// The view `wasi:http` host calls work on: this state and the call's resource table.
    pub fn view<'a>(&'a mut self, table: &'a mut ResourceTable) -> WasiHttpCtxView<'a> {
        WasiHttpCtxView { ctx: &mut self.ctx, table, hooks: &mut self.hooks }
    }
}

/// The hooks that send (or refuse) a call's outgoing requests.
struct Outgoing {
    outbound: Option<Outbound>,
    /// Requests of this call from sending to the end (or drop) of their response body.
    in_flight: Arc<AtomicU32>,
    notes: Notes,
}

/// Counts one request as in flight until dropped (it travels with the response body).
struct InFlight(Arc<AtomicU32>);

impl InFlight {
    fn take(count: &Arc<AtomicU32>, limit: u32) -> Option<InFlight> {
        count.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| (n < limit).then_some(n + 1)).ok()?;
        Some(InFlight(count.clone()))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl WasiHttpHooks for Outgoing {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: IoFuture,
    ) -> SendFuture {
        let notes = self.notes.clone();
        let Some(outbound) = self.outbound.clone() else {
            notes(&format!("outbound {} {} refused: this call may not send requests", request.method(), request.uri()));
            return Box::new(async { Err(HttpError::HttpRequestDenied) });
        };
        let in_flight = InFlight::take(&self.in_flight, outbound.0.settings.spec.requests_at_once);
        Box::new(async move {
            let started = Instant::now();
            let (method, target) = (request.method().clone(), send::Target::of(request.uri()));
            let f = &outbound.0;
            let result = match target {
                Err(why) => Err(send::Refusal::Invalid(why)),
                Ok(target) => send::send(f, target, request, options, in_flight).await,
            };
            let elapsed = started.elapsed().as_millis();
            let (label, outcome) = match &result {
                Ok(sent) => {
                    notes(&format!("outbound {method} {}: {} in {elapsed} ms", sent.target, sent.response.status().as_u16()));
                    (sent.label.clone(), "ok")
                }
                Err(refusal) => {
                    notes(&format!("outbound {method} {refusal} (after {elapsed} ms)"));
                    (refusal.host_label(), refusal.outcome())
                }
            };
            tracing::debug!(app = %f.app, function = %f.function, host = %label, outcome, "outbound request");
            f.metrics.record_outbound(&f.app, &f.function, &label, outcome);
            result.map(|sent| (sent.response, sent.io)).map_err(send::Refusal::into_error)
        })
    }
}
