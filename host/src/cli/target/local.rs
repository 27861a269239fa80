//! The data dir as a [`Target`]: a [`Host`] opened here, with the app of `-f` for the commands
//! that call functions.

use std::io::Write;
use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use host::{App, Error, Function, Host};
use serde_json::Value;

use super::{CallResult, Called, Dataset, ExecutionQuery, ITEMS_PAGE, ItemQuery, MapEvent, Refusal, Target};
use crate::cli::{AppArgs, Context, load_app};

/// The local host, and the app functions are called in.
pub struct Local {
    host: Host,
    app: Option<App>,
}

impl Local {
    /// Open the data dir (no server may be using it) and load `app` when given.
    pub async fn open(context: &Context, app: Option<&AppArgs>) -> anyhow::Result<Local> {
        let host = context.open(context.local.clone()).await?;
        let app = app.map(|app| load_app(&host, &app.manifest, app.build)).transpose()?;
        Ok(Local { host, app })
    }

    fn function(&self, name: &str) -> anyhow::Result<Function> {
        // Only `call` and `map` call functions, and both open the target with their app.
        let app = self.app.as_ref().context("no app is loaded to call functions of")?;
        Ok(app.function(name)?)
    }

    async fn dataset(&self, dataset: &Dataset<'_>) -> anyhow::Result<host::storage::datasets::Dataset> {
        Ok(self.host.dataset(dataset.app, dataset.name).await?)
    }
}

#[async_trait(?Send)]
impl Target for Local {
    async fn call(&self, function: &str, args: &Value) -> anyhow::Result<Called> {
        let report = self.function(function)?.invoke(args).await.map_err(Error::from)?;
        let mut logs = format!("{}{}", report.logs.stdout, report.logs.stderr);
        if report.logs.dropped > 0 {
            logs.push_str(&format!(
                "[output truncated: {} bytes over the `output` limit were dropped]\n",
                report.logs.dropped
            ));
        }
        let result = report.result.map_err(|error| Refusal { message: error.to_string(), bad_input: false });
        Ok(Called { logs, result })
    }

    async fn start(&self, _: &str, _: &Value, _: bool) -> CallResult<Value> {
        // Jobs run in `host serve`: this process would end before them (clap asks for `--remote`).
        anyhow::bail!("--async and --enqueue need --remote")
    }

    async fn map(&self, function: &str, starmap: bool, inputs: Value, on: &mut dyn FnMut(MapEvent)) -> CallResult<()> {
        let function = self.function(function)?;
        let arg_sets = match (starmap, inputs) {
            (true, Value::Array(sets)) => sets,
            (true, other) => anyhow::bail!("starmap inputs: expected a JSON list of argument lists, got {other}"),
            (false, inputs) => function.map_args(&inputs).map_err(Error::from)?,
        };
        on(MapEvent::Total(arg_sets.len()));
        function.starmap(&arg_sets, |index, outcome| on(MapEvent::Outcome(index, host::outcome_json(outcome)))).await;
        Ok(Ok(()))
    }

    async fn executions(&self, query: ExecutionQuery) -> anyhow::Result<Vec<Value>> {
        let status = query.status.map(|s| s.parse()).transpose().map_err(|e: String| anyhow::anyhow!(e))?;
        let filter = host::executions::ExecutionFilter {
            app: query.app,
            function: query.function,
            trigger: query.trigger,
            status,
            ..Default::default()
        };
        let records = self.host.executions().list(&filter, None, query.limit).await;
        Ok(records.iter().map(serde_json::to_value).collect::<Result<_, _>>()?)
    }

    async fn wait(&self, id: &str, timeout: Duration) -> anyhow::Result<Value> {
        let record = self.host.executions().wait(id, timeout).await;
        Ok(serde_json::to_value(record.with_context(|| format!("no execution `{id}`"))?)?)
    }

    async fn cancel(&self, id: &str) -> anyhow::Result<Value> {
        Ok(serde_json::to_value(self.host.executions().cancel(id).await?)?)
    }

    async fn logs(&self, id: &str) -> anyhow::Result<Vec<u8>> {
        self.host.executions().get(id).await.with_context(|| format!("no execution `{id}`"))?;
        Ok(self.host.executions().logs(id).await.unwrap_or_default().into_bytes())
    }

    async fn follow_logs(&self, _: &str, _: &mut dyn Write) -> anyhow::Result<()> {
        anyhow::bail!("--follow needs --remote: executions run in `host serve`, not in this process")
    }

    async fn upload(&self, dataset: &Dataset<'_>, dir: &str, name: &str, data: Vec<u8>) -> anyhow::Result<Value> {
        let item = self.dataset(dataset).await?.upload(dir, name, None, data, None, None).await?;
        Ok(serde_json::to_value(item)?)
    }

    async fn items(&self, dataset: &Dataset<'_>, query: &ItemQuery, cursor: Option<&str>) -> anyhow::Result<Value> {
        let filter = host::storage::datasets::ItemFilter {
            dir: query.dir.clone(),
            mimetype: query.mimetype.clone(),
            metadata: Vec::new(),
        };
        Ok(serde_json::to_value(self.dataset(dataset).await?.list(&filter, cursor, ITEMS_PAGE).await?)?)
    }

    async fn item(&self, dataset: &Dataset<'_>, id: &str) -> anyhow::Result<Vec<u8>> {
        Ok(serde_json::to_vec_pretty(&self.dataset(dataset).await?.get(id).await?)?)
    }

    async fn download(&self, dataset: &Dataset<'_>, id: &str) -> anyhow::Result<Vec<u8>> {
        Ok(self.dataset(dataset).await?.download(id).await?)
    }
}
