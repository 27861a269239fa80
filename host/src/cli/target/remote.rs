//! A running `host serve` as a [`Target`], through its REST API.

use std::io::Write;
use std::time::Duration;

use async_trait::async_trait;
use host::client::{Client, Failure, Reply};
use serde_json::Value;

use super::{CallResult, Called, Dataset, ExecutionQuery, ITEMS_PAGE, ItemQuery, MapEvent, Refusal, Target};

impl From<Failure> for Refusal {
    fn from(failure: Failure) -> Refusal {
        Refusal { message: failure.message, bad_input: failure.bad_input }
    }
}

/// The server's answer, its error as the command's error.
fn answer<T>(reply: Reply<T>) -> anyhow::Result<T> {
    reply?.map_err(|failure| anyhow::anyhow!("{} ({}): {}", failure.code, failure.status, failure.message))
}

/// The server's answer to a call, its error as the call's [`Refusal`].
fn called<T>(reply: Reply<T>) -> CallResult<T> {
    Ok(reply?.map_err(Refusal::from))
}

/// How many calls a `map` over `inputs` makes: the list's length, or the length of the lists.
fn map_count(inputs: &Value) -> usize {
    match inputs {
        Value::Array(items) => items.len(),
        Value::Object(lists) => lists.values().next().and_then(Value::as_array).map_or(0, Vec::len),
        _ => 0,
    }
}

#[async_trait(?Send)]
impl Target for Client {
    async fn call(&self, function: &str, args: &Value) -> anyhow::Result<Called> {
        Ok(Called { logs: String::new(), result: called(Client::call(self, function, args).await)? })
    }

    async fn start(&self, function: &str, args: &Value, enqueue: bool) -> CallResult<Value> {
        called(Client::start(self, function, args, enqueue).await)
    }

    async fn map(&self, function: &str, starmap: bool, inputs: Value, on: &mut dyn FnMut(MapEvent)) -> CallResult<()> {
        // The server streams outcomes as they end; the count is known from the inputs alone.
        on(MapEvent::Total(if starmap { inputs.as_array().map_or(0, Vec::len) } else { map_count(&inputs) }));
        let mapped = Client::map(self, function, starmap, &inputs, |mut outcome| {
            let index = outcome["index"].as_u64().unwrap_or(0) as usize;
            outcome.as_object_mut().map(|o| o.remove("index"));
            on(MapEvent::Outcome(index, outcome));
        });
        called(mapped.await)
    }

    async fn executions(&self, query: ExecutionQuery) -> anyhow::Result<Vec<Value>> {
        let filters = [
            ("app", query.app.as_deref()),
            ("function", query.function.as_deref()),
            ("trigger", query.trigger.as_deref()),
            ("status", query.status.as_deref()),
        ];
        match answer(Client::executions(self, query.limit, &filters).await)? {
            Value::Array(records) => Ok(records),
            _ => Ok(Vec::new()),
        }
    }

    async fn wait(&self, id: &str, timeout: Duration) -> anyhow::Result<Value> {
        answer(Client::wait(self, id, timeout).await)
    }

    async fn cancel(&self, id: &str) -> anyhow::Result<Value> {
        answer(Client::cancel(self, id).await)
    }

    async fn logs(&self, id: &str) -> anyhow::Result<Vec<u8>> {
        Ok(answer(Client::logs(self, id).await)?.to_vec())
    }

    async fn follow_logs(&self, id: &str, out: &mut dyn Write) -> anyhow::Result<()> {
        let mut failed = None;
        let status = Client::follow_logs(self, id, |line| {
            if let Err(error) = writeln!(out, "{line}") {
                failed = Some(error);
            }
        })
        .await?;
        if let Some(error) = failed {
            return Err(error.into());
        }
        anyhow::ensure!(status.is_success(), "no execution `{id}` ({status})");
        Ok(())
    }

    async fn upload(&self, dataset: &Dataset<'_>, dir: &str, name: &str, data: Vec<u8>) -> anyhow::Result<Value> {
        answer(Client::upload(self, dataset.app, dataset.name, dir, name, data).await)
    }

    async fn items(&self, dataset: &Dataset<'_>, query: &ItemQuery, cursor: Option<&str>) -> anyhow::Result<Value> {
        let query = [("dir", query.dir.as_deref()), ("mimetype", query.mimetype.as_deref()), ("cursor", cursor)];
        answer(Client::items(self, dataset.app, dataset.name, ITEMS_PAGE, &query).await)
    }

    async fn item(&self, dataset: &Dataset<'_>, id: &str) -> anyhow::Result<Vec<u8>> {
        Ok(answer(Client::item(self, dataset.app, dataset.name, id).await)?.to_vec())
    }

    async fn download(&self, dataset: &Dataset<'_>, id: &str) -> anyhow::Result<Vec<u8>> {
        Ok(answer(Client::download(self, dataset.app, dataset.name, id).await)?.to_vec())
    }
}
