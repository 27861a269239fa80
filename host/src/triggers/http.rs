//! `[[trigger.http]]`: each request to a route runs in a fresh instance of a component exporting
//! `wasi:http/incoming-handler`, with the same limits, grants and metrics as a typed call.

use std::sync::Arc;

use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::call::{CallState, Guest, Sandbox};
use crate::invocation::{Admission, Invocation, Origin};
use crate::manifest::HttpRoute;
use crate::outcome::{CallError, Logs};

/// A request body as the handler takes it.
pub type RequestBody = wasmtime_wasi_http::WasiBody;

/// Where the guest's response goes once it sets one.
type ResponseSender = tokio::sync::oneshot::Sender<Result<http::Response<HyperOutgoingBody>, ErrorCode>>;

/// A route and the component that answers it.
#[derive(Clone)]
pub struct HttpHandler {
    route: HttpRoute,
    guest: Arc<Guest>,
    pre: ProxyPre<CallState>,
}

impl HttpHandler {
    /// Check that the guest exports `wasi:http/incoming-handler` and prepare it.
    pub(crate) fn new(route: HttpRoute, guest: Arc<Guest>) -> Result<HttpHandler, String> {
        let pre = ProxyPre::new(guest.pre.clone()).map_err(|e| {
            format!(
                "function `{}` serves route `{}` but does not export `wasi:http/incoming-handler@0.2.x`: {e:#}",
                guest.name, route.route
            )
        })?;
        Ok(HttpHandler { route, guest, pre })
    }

    /// The route from the manifest.
    pub fn route(&self) -> &HttpRoute {
        &self.route
    }

    /// The component answering the route.
    pub fn guest(&self) -> &Arc<Guest> {
        &self.guest
    }

    /// Answer one request in a fresh instance. The response body streams from the guest while it
    /// runs; an `Err` means no response was set (trap, timeout, limit, pause).
    pub async fn handle(
        &self,
        request: http::Request<RequestBody>,
    ) -> Result<http::Response<HyperOutgoingBody>, CallError> {
        // Admitted here, so a request given up while it waits for a slot never runs.
        let admission = match self.guest.admit().await {
            Ok(slot) => Admission::Held(slot),
            Err(refused) => Admission::Refused(refused),
        };
        let input = serde_json::json!({ "method": request.method().as_str(), "uri": request.uri().to_string() });
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let this = self.clone();
        // The guest keeps writing the body after it sets the response, so it runs on its own task.
        // Boxed: the future is several KiB, and the task would otherwise copy it on each move.
        let task = tokio::spawn(Box::pin(async move {
            let guest = &this.guest;
            let invocation = Invocation::new(guest, &guest.name, &input, Origin::Http);
            let report = invocation.run(admission, async || this.serve(request, sender).await).await;
            report.result
        }));
        match receiver.await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(code)) => Err(CallError::Host { message: format!("the guest answered with error {code:?}") }),
            Err(_no_response) => match task.await {
                Ok(Err(error)) => Err(error),
                Ok(Ok(())) => Err(CallError::Host { message: "the guest returned without setting a response".into() }),
                Err(join) => Err(CallError::Host { message: format!("request task failed: {join}") }),
            },
        }
    }

    /// Run the handler in a fresh sandbox: the response goes to `sender` as soon as the guest sets
    /// it. What the guest printed goes to the host's log.
    async fn serve(
        &self,
        request: http::Request<RequestBody>,
        sender: ResponseSender,
    ) -> (Result<(), CallError>, Logs) {
        let guest = &self.guest;
        let mut sandbox = Sandbox::new(self.pre.engine(), guest.limits, guest.caps.clone());
        let result = sandbox
            .run(async |store| {
                let proxy = self.pre.instantiate_async(&mut *store).await?;
                let http = &mut store.data_mut().http();
                let request = http.new_incoming_request(Scheme::Http, request)?;
                let out = http.new_response_outparam(sender)?;
                proxy.wasi_http_incoming_handler().call_handle(&mut *store, request, out).await
            })
            .await;
        let logs = sandbox.logs();
        if !(logs.stdout.is_empty() && logs.stderr.is_empty()) {
            tracing::info!(app = %guest.app, function = %guest.name, stdout = %logs.stdout, stderr = %logs.stderr, "guest output");
        }
        (result, logs)
    }
}
