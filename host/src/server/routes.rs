//! Every path `host serve` answers itself, written once: the router binds each [`Route`] to its
//! handler, the OpenAPI document describes each, the client builds its URLs with [`Route::path`],
//! and the dashboard gets the templates from [`Route::scripts_table`]. Pure data: no server types,
//! so the client can use it too. Paths outside the table are the apps' `[[trigger.http]]` routes
//! and `[site]` folders.

use http::Method;

/// Who may use a route: the scope a token needs for it (see `scopes`). Every route of the table
/// names one, so no route can be added without deciding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Open to everyone: health checks and the pages that ask for the token.
    Public,
    /// Any valid token.
    Any,
    /// Any scope of the route's app (`app:NAME:invoke`, `read` or `write`).
    AppAny,
    /// `app:NAME:invoke` of the route's app.
    Invoke,
    /// `app:NAME:read` of the route's app.
    Read,
    /// `app:NAME:write` of the route's app.
    Write,
    /// `app:NAME:read` of an execution record's app (`write` to cancel it), checked by the
    /// handler once it has read the record; `admin` for the records of every app at once.
    Record,
    /// `deploy`.
    Deploy,
    /// `admin`.
    Admin,
}

/// Declares [`Route`] and its accessors from one list, so that a route cannot have a path
/// without a method, an operation id or a summary, nor be left out of [`Route::ALL`].
macro_rules! routes {
    ($($name:ident: $method:ident $path:literal, $operation:literal, $access:ident, $summary:literal;)*) => {
        /// One path and method `host serve` answers itself.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Route {
            $(#[doc = $summary] $name,)*
        }

        impl Route {
            /// Every route, in table order.
            pub const ALL: &'static [Route] = &[$(Route::$name,)*];

            /// The HTTP method.
            pub fn method(self) -> Method {
                match self { $(Route::$name => Method::$method,)* }
            }

            /// The path template, in the router's syntax: `{name}` is one segment, `{*name}` the rest.
            pub fn template(self) -> &'static str {
                match self { $(Route::$name => $path,)* }
            }

            /// The OpenAPI operation id; per-app operations append the app and resource names.
            pub fn operation(self) -> &'static str {
                match self { $(Route::$name => $operation,)* }
            }

            /// Who may use it.
            pub fn access(self) -> Access {
                match self { $(Route::$name => Access::$access,)* }
            }

            /// One line on what it does.
            pub fn summary(self) -> &'static str {
                match self { $(Route::$name => $summary,)* }
            }
        }
    };
}

routes! {
    ListApps: GET "/v1/apps", "list_apps", Any, "List apps with their functions";
    ShowApp: GET "/v1/apps/{app}", "show_app", AppAny, "Describe one app";
    Deploy: PUT "/v1/apps/{app}", "deploy", Deploy,
        "Deploy a bundle as the app's next version: checked, compiled, then swapped in without a restart";
    Undeploy: DELETE "/v1/apps/{app}", "undeploy", Deploy, "Stop a deployed app and forget its versions (its data stays)";
    Versions: GET "/v1/apps/{app}/versions", "versions", Deploy, "Every deployed version of an app, newest first";
    Rollback: POST "/v1/apps/{app}/rollback", "rollback", Deploy,
        "Run an earlier version again (by default the one before the running one)";
    DescribeFunction: GET "/v1/apps/{app}/functions/{function}", "describe", AppAny, "Describe a function";
    Call: POST "/v1/apps/{app}/functions/{function}", "call", Invoke, "Call a function (now, as a job, or enqueued)";
    Map: POST "/v1/apps/{app}/functions/{function}/map", "map", Invoke,
        "Call a function once per input in parallel instances";
    Starmap: POST "/v1/apps/{app}/functions/{function}/starmap", "starmap", Invoke,
        "Call a function once per argument list in parallel instances";
    Pause: POST "/v1/apps/{app}/functions/{function}/pause", "pause", Write, "Pause a function's component";
    Resume: POST "/v1/apps/{app}/functions/{function}/resume", "resume", Write, "Resume a function's component";
    RecentCalls: GET "/v1/calls", "recent_calls", Admin, "The most recent calls, newest first";
    CallHistory: GET "/v1/calls/history", "call_history", Admin,
        "Calls, errors and latency percentiles per function and minute, over the last hour";
    ListKv: GET "/v1/apps/{app}/kv/{store}", "list_kv", Read, "List keys of a store";
    GetKv: GET "/v1/apps/{app}/kv/{store}/{*key}", "get_kv", Read, "Read a value of a store";
    PutKv: PUT "/v1/apps/{app}/kv/{store}/{*key}", "put_kv", Write, "Write a value of a store";
    DeleteKv: DELETE "/v1/apps/{app}/kv/{store}/{*key}", "delete_kv", Write, "Delete a value of a store";
    ListBucket: GET "/v1/apps/{app}/buckets/{bucket}", "list_bucket", Read, "List keys of a bucket";
    GetObject: GET "/v1/apps/{app}/buckets/{bucket}/{*key}", "get_object", Read, "Read an object of a bucket";
    PutObject: PUT "/v1/apps/{app}/buckets/{bucket}/{*key}", "put_object", Write, "Write an object of a bucket";
    DeleteObject: DELETE "/v1/apps/{app}/buckets/{bucket}/{*key}", "delete_object", Write,
        "Delete an object of a bucket";
    QueueStats: GET "/v1/apps/{app}/queues/{queue}", "queue", Read, "Messages ready and waiting in a queue";
    Send: POST "/v1/apps/{app}/queues/{queue}", "send", Write, "Send a message to a queue";
    Receive: POST "/v1/apps/{app}/queues/{queue}/receive", "receive", Write, "Lease messages of a queue";
    Complete: POST "/v1/apps/{app}/queues/{queue}/complete", "complete", Write, "Remove a leased message";
    ListMessages: GET "/v1/apps/{app}/queues/{queue}/messages", "list_messages", Read,
        "Messages of a queue, oldest first, without leasing them";
    Requeue: POST "/v1/apps/{app}/queues/{queue}/messages/{id}/requeue", "requeue", Write,
        "Send a dead letter back to its queue";
    DeleteMessage: DELETE "/v1/apps/{app}/queues/{queue}/messages/{id}", "delete_message", Write,
        "Remove a message of a queue";
    Publish: POST "/v1/apps/{app}/topics/{topic}", "publish", Write, "Publish an event to a topic";
    ListItems: GET "/v1/apps/{app}/datasets/{dataset}/items", "list_items", Read, "List items of a dataset";
    Upload: POST "/v1/apps/{app}/datasets/{dataset}/items", "upload", Write, "Upload a file to a dataset";
    ShowItem: GET "/v1/apps/{app}/datasets/{dataset}/items/{id}", "show_item", Read, "One item of a dataset";
    DeleteItem: DELETE "/v1/apps/{app}/datasets/{dataset}/items/{id}", "delete_item", Write, "Delete an item";
    Download: GET "/v1/apps/{app}/datasets/{dataset}/items/{id}/download", "download", Read,
        "The bytes of an item";
    Metadata: PUT "/v1/apps/{app}/datasets/{dataset}/items/{id}/metadata", "metadata", Write,
        "Replace the metadata of an item";
    Annotations: GET "/v1/apps/{app}/datasets/{dataset}/items/{id}/annotations", "annotations", Read,
        "Annotations of an item";
    Annotate: POST "/v1/apps/{app}/datasets/{dataset}/items/{id}/annotations", "annotate", Write,
        "Add annotations to an item";
    Unannotate: DELETE "/v1/apps/{app}/datasets/{dataset}/items/{id}/annotations/{annotation}", "unannotate",
        Write, "Delete an annotation of an item";
    ListExecutions: GET "/v1/executions", "list_executions", Record, "Execution records, newest first";
    ShowExecution: GET "/v1/executions/{id}", "show_execution", Record, "One execution record";
    ExecutionLogs: GET "/v1/executions/{id}/logs", "execution_logs", Record, "What an execution printed";
    CancelExecution: POST "/v1/executions/{id}/cancel", "cancel_execution", Record,
        "Cancel a queued or running execution: it ends `cancelled`";
    OpenApi: GET "/v1/openapi.json", "openapi", Any, "This document";
    Metrics: GET "/metrics", "metrics", Admin, "Prometheus metrics";
    Healthz: GET "/healthz", "healthz", Public, "Liveness";
    Login: POST "/ui/session", "login", Public, "Trade the token for a dashboard session cookie";
    Logout: DELETE "/ui/session", "logout", Public, "End the dashboard session";
    Dashboard: GET "/ui", "dashboard", Public, "The dashboard page";
    DashboardScript: GET "/ui/app.js", "dashboard_script", Public, "The dashboard's script";
    Style: GET "/ui/style.css", "style", Public, "The style sheet of the dashboard and docs pages";
    Docs: GET "/docs", "docs", Public, "The API docs page";
    DocsScript: GET "/docs/docs.js", "docs_script", Public, "The docs page's script";
}

impl Route {
    /// The path with `args` filled into its parameters in order, each percent-encoded (the
    /// slashes of a `{*rest}` parameter stay). Missing arguments are left as `{name}`.
    pub fn path(self, args: &[&str]) -> String {
        fill(self.template(), args, true)
    }

    /// The path with `args` filled in as they are and the other parameters as OpenAPI writes
    /// them (`{name}`, also for a `{*rest}` parameter).
    pub fn openapi_path(self, args: &[&str]) -> String {
        fill(self.template(), args, false)
    }

    /// Whether the route lives under one app (`/v1/apps/{app}/...`): OpenAPI lists it per app and
    /// per granted resource. Deploy routes are not: their app need not run yet.
    pub fn per_app(self) -> bool {
        self.template().starts_with("/v1/apps/{app}/") && self.access() != Access::Deploy
    }

    /// A script defining `ROUTES`, operation id to path template, for the dashboard and docs pages.
    pub fn scripts_table() -> String {
        let table: serde_json::Map<String, serde_json::Value> =
            Route::ALL.iter().map(|r| (r.operation().to_string(), r.template().into())).collect();
        format!("const ROUTES = {};\n", serde_json::Value::Object(table))
    }
}

fn fill(template: &str, args: &[&str], encoded: bool) -> String {
    let mut path = String::with_capacity(template.len());
    let mut args = args.iter();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let close = open + rest[open..].find('}').expect("a parameter ends with `}`");
        path.push_str(&rest[..open]);
        let name = &rest[open + 1..close];
        let (name, wildcard) = name.strip_prefix('*').map_or((name, false), |n| (n, true));
        match args.next() {
            Some(arg) if encoded && wildcard => {
                path.push_str(&arg.split('/').map(encode).collect::<Vec<_>>().join("/"))
            }
            Some(arg) if encoded => path.push_str(&encode(arg)),
            Some(arg) => path.push_str(arg),
            None => path.push_str(&format!("{{{name}}}")),
        }
        rest = &rest[close + 1..];
    }
    path.push_str(rest);
    path
}

/// `path` with a query of the `pairs` that have a value, each value percent-encoded.
pub fn with_query(path: String, pairs: &[(&str, Option<&str>)]) -> String {
    let mut url = path;
    for (key, value) in pairs.iter().filter_map(|(key, value)| Some((key, (*value)?))) {
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str(&format!("{key}={}", encode(value)));
    }
    url
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

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn methods_paths_and_operations_are_unique() {
        let pairs: HashSet<_> = Route::ALL.iter().map(|r| (r.method(), r.template())).collect();
        assert_eq!(pairs.len(), Route::ALL.len(), "two routes share a method and path");
        let ids: HashSet<_> = Route::ALL.iter().map(|r| r.operation()).collect();
        assert_eq!(ids.len(), Route::ALL.len(), "two routes share an operation id");
    }

    #[test]
    fn paths_are_filled_and_encoded() {
        assert_eq!(Route::Call.path(&["hello", "hello.greet"]), "/v1/apps/hello/functions/hello.greet");
        assert_eq!(Route::ShowItem.path(&["a b", "ds", "x/y"]), "/v1/apps/a%20b/datasets/ds/items/x%2Fy");
        assert_eq!(Route::GetKv.path(&["app", "default", "a b/c"]), "/v1/apps/app/kv/default/a%20b/c");
        assert_eq!(Route::GetKv.openapi_path(&["app", "default"]), "/v1/apps/app/kv/default/{key}");
        assert_eq!(Route::ShowExecution.openapi_path(&[]), "/v1/executions/{id}");
        let listed = with_query(
            Route::ListExecutions.path(&[]),
            &[("limit", Some("20")), ("app", None), ("status", Some("a&b"))],
        );
        assert_eq!(listed, "/v1/executions?limit=20&status=a%26b");
        assert!(Route::Pause.per_app() && !Route::ShowApp.per_app() && !Route::Healthz.per_app());
    }
}
