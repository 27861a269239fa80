//! Storage libraries: plain data stores with their own error types, each behind an async backend
//! trait whose first implementation is embedded (the sled store plus local folders). The traits are
//! shaped for a networked store (CAS by revision, leases as ack deadlines, durable consumers,
//! streamed blobs, events written with their change), so another backend can be put behind them
//! without touching their users: the WIT adapters (`capabilities`), the triggers and the operator
//! API, which all sit above.

pub mod blobs;
pub mod datasets;
pub mod executions;
pub mod kv;
pub mod nats;
pub mod queues;
pub mod topics;

/// Every key of a listing read page by page (`page` lists the page after a cursor: its keys and
/// the next cursor), checking that no page holds more than `limit` keys. For the backend suites.
#[cfg(test)]
pub(crate) async fn every_page<F, Fut>(limit: usize, mut page: F) -> Vec<String>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: std::future::Future<Output = (Vec<String>, Option<String>)>,
{
    let (mut seen, mut cursor) = (Vec::new(), None);
    loop {
        let (keys, next) = page(cursor).await;
        assert!(keys.len() <= limit, "a page of {} keys, the limit was {limit}", keys.len());
        seen.extend(keys);
        match next {
            Some(next) => cursor = Some(next),
            None => return seen,
        }
    }
}

/// One page of `sorted` keys: those starting with `prefix` after `cursor`, at most `limit`, and
/// the cursor of the next page (the page's last key) when more follow.
pub(crate) fn page_of(
    sorted: impl IntoIterator<Item = String>,
    prefix: &str,
    cursor: Option<&str>,
    limit: usize,
) -> (Vec<String>, Option<String>) {
    let mut page: Vec<String> = sorted
        .into_iter()
        .filter(|k| k.starts_with(prefix) && cursor.is_none_or(|c| k.as_str() > c))
        .take(limit + 1)
        .collect();
    let cursor = (page.len() > limit).then(|| {
        page.truncate(limit);
        page[limit - 1].clone()
    });
    (page, cursor)
}

/// Check a resource name (queue, topic, ...) by the rule of [`crate::names::ResourceName`].
fn check_name(name: &str) -> Result<(), String> {
    name.parse::<crate::names::ResourceName>().map(drop)
}
