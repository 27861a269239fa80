//! The router of the host's own paths, built from the route table: each [`Route`] is bound to its
//! handler here and nowhere else, so no path is answered without being in the table (and thus in
//! the OpenAPI document). Also the dashboard and docs pages and the metrics.

use std::sync::LazyLock;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, on};
use serde_json::json;

use super::routes::{Access, Route};
use super::{Shared, api, auth, deploys, executions, items, openapi, operator, queues, topics};

/// Every route of the table, those needing a token behind the check of their scope.
pub(super) fn table(server: &Shared) -> Router<Shared> {
    Route::ALL.iter().fold(Router::new(), |router, &route| {
        let mut handler = handler(route);
        if route.access() != Access::Public {
            handler = handler.route_layer(middleware::from_fn_with_state((server.clone(), route), auth::require_scope));
        }
        router.route(route.template(), handler)
    })
}

/// The handler of `route`, on its method.
fn handler(route: Route) -> MethodRouter<Shared> {
    let method = MethodFilter::try_from(route.method()).expect("the table's methods are standard");
    match route {
        Route::ListApps => on(method, api::list_apps),
        Route::ShowApp => on(method, api::show_app),
        Route::Deploy => on(method, deploys::deploy),
        Route::Undeploy => on(method, deploys::undeploy),
        Route::Versions => on(method, deploys::versions),
        Route::Rollback => on(method, deploys::rollback),
        Route::DescribeFunction => on(method, api::show_function),
        Route::Call => on(method, api::invoke),
        Route::Map => on(method, api::map),
        Route::Starmap => on(method, api::starmap),
        Route::Pause => on(method, api::pause),
        Route::Resume => on(method, api::resume),
        Route::RecentCalls => on(method, api::recent_calls),
        Route::CallHistory => on(method, api::call_history),
        Route::ListKv => on(method, operator::kv_list),
        Route::GetKv => on(method, operator::kv_get),
        Route::PutKv => on(method, operator::kv_put),
        Route::DeleteKv => on(method, operator::kv_delete),
        Route::ListBucket => on(method, operator::bucket_list),
        Route::GetObject => on(method, operator::bucket_get),
        Route::PutObject => on(method, operator::bucket_put),
        Route::DeleteObject => on(method, operator::bucket_delete),
        Route::QueueStats => on(method, queues::stats),
        Route::Send => on(method, queues::send),
        Route::Receive => on(method, queues::receive),
        Route::Complete => on(method, queues::complete),
        Route::ListMessages => on(method, queues::list),
        Route::Requeue => on(method, queues::requeue),
        Route::DeleteMessage => on(method, queues::remove),
        Route::Publish => on(method, topics::publish),
        Route::ListItems => on(method, items::list),
        Route::Upload => on(method, items::upload),
        Route::ShowItem => on(method, items::show),
        Route::DeleteItem => on(method, items::remove),
        Route::Download => on(method, items::download),
        Route::Metadata => on(method, items::update_metadata),
        Route::Annotations => on(method, items::annotations),
        Route::Annotate => on(method, items::add_annotations),
        Route::Unannotate => on(method, items::delete_annotation),
        Route::ListExecutions => on(method, executions::list),
        Route::ShowExecution => on(method, executions::show),
        Route::ExecutionLogs => on(method, executions::logs),
        Route::CancelExecution => on(method, executions::cancel),
        Route::OpenApi => on(method, openapi::document),
        Route::Metrics => on(method, metrics),
        Route::Healthz => on(method, healthz),
        Route::Login => on(method, auth::login),
        Route::Logout => on(method, auth::logout),
        Route::Dashboard => on(method, || async { page(DASHBOARD_HTML) }),
        Route::DashboardScript => on(method, || async { script(&DASHBOARD_JS) }),
        Route::Style => on(method, || async { asset("text/css; charset=utf-8", STYLE_CSS) }),
        Route::Docs => on(method, || async { page(DOCS_HTML) }),
        Route::DocsScript => on(method, || async { script(&DOCS_JS) }),
    }
}

const DASHBOARD_HTML: &str = include_str!("ui/index.html");
const STYLE_CSS: &str = include_str!("ui/style.css");
const DOCS_HTML: &str = include_str!("ui/docs.html");

static DASHBOARD_JS: LazyLock<String> = LazyLock::new(|| with_routes(include_str!("ui/app.js")));
static DOCS_JS: LazyLock<String> = LazyLock::new(|| with_routes(include_str!("ui/docs.js")));

/// `script` with the route table (`ROUTES`) it takes its API paths from, right after its
/// `'use strict';` (which only counts as the first statement).
fn with_routes(script: &str) -> String {
    const STRICT: &str = "'use strict';\n";
    let at = script.find(STRICT).expect("the pages' scripts are strict") + STRICT.len();
    format!("{}{}{}", &script[..at], Route::scripts_table(), &script[at..])
}

fn page(html: &'static str) -> Response {
    asset("text/html; charset=utf-8", html)
}

fn script(text: &'static LazyLock<String>) -> Response {
    asset("text/javascript; charset=utf-8", text.as_str())
}

fn asset(content_type: &'static str, text: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-cache")], text).into_response()
}

/// `200 {"status": "ok"}`, or `503 store-failed` once the embedded store refuses writes: only a
/// restart mends that, which is what a liveness probe is for.
async fn healthz(State(server): State<Shared>) -> Response {
    match server.host.store().and_then(|store| store.failure()) {
        None => axum::Json(json!({ "status": "ok" })).into_response(),
        Some(why) => {
            let message = format!("the store refuses writes until the host restarts: {why}");
            super::ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "store-failed", message).into_response()
        }
    }
}

async fn metrics(State(server): State<Shared>) -> Response {
    let text = server.host.metrics().prometheus();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
}
