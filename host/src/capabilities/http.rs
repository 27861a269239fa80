//! `wasi:http` types and `outgoing-handler`: linked for every function (with WASI) so that
//! components built for `wasmtime serve` or Spin instantiate unchanged. Incoming requests reach a
//! guest through the http trigger; outgoing requests are denied (no function is granted the
//! network).

use wasmtime::component::ResourceTable;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks};

/// The `wasi:http` state of one call.
pub struct Http {
    ctx: WasiHttpCtx,
    hooks: DenyOutgoing,
}

impl Default for Http {
    fn default() -> Http {
        Http { ctx: WasiHttpCtx::new(), hooks: DenyOutgoing }
    }
}

impl Http {
    /// The view `wasi:http` host calls work on: this state and the call's resource table.
    pub fn view<'a>(&'a mut self, table: &'a mut ResourceTable) -> WasiHttpCtxView<'a> {
        WasiHttpCtxView { ctx: &mut self.ctx, table, hooks: &mut self.hooks }
    }
}

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
