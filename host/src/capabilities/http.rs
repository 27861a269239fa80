//! `wasi:http` types and `outgoing-handler`: linked so that components built for `wasmtime serve`
//! or Spin instantiate unchanged. Incoming requests reach a guest through
//! [`crate::triggers::http`]; outgoing requests are denied (no function is granted the network).

use wasmtime_wasi_http::{WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use crate::call::CallState;

/// Hooks that refuse every outgoing request with `HTTP-request-denied`.
#[derive(Default)]
pub struct DenyOutgoing;

impl WasiHttpHooks for DenyOutgoing {
    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        _options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<
        dyn Future<
                Output = Result<
                    (
                        http::Response<wasmtime_wasi_http::WasiBody>,
                        Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
                    ),
                    wasmtime_wasi_http::Error,
                >,
            > + Send,
    > {
        tracing::debug!(uri = %request.uri(), "outgoing HTTP request denied");
        Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) })
    }
}

impl WasiHttpView for CallState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.http_hooks }
    }
}
