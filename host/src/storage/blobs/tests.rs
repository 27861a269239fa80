//! Behaviour every [`BlobBackend`] must have, written over `&dyn BlobBackend` so that each
//! backend runs the same checks; the local backend runs them on a temporary folder below.

use tokio::io::AsyncRead;

use super::{BlobBackend, BlobError, Bucket, MAX_PAGE, from_bytes, read_to_vec};

async fn read(bucket: &dyn Bucket, key: &str) -> Result<Vec<u8>, BlobError> {
    read_to_vec(key, bucket.read(key, 0, u64::MAX).await?).await
}

/// Write, read (whole and ranges), replace, stat, delete; empty objects are objects.
pub(crate) async fn write_read_delete(blobs: &dyn BlobBackend) {
    let bucket = blobs.open("app", "b").await.unwrap();
    assert_eq!(read(&*bucket, "a/b.txt").await, Err(BlobError::NoSuchKey("a/b.txt".into())));
    assert!(!bucket.exists("a/b.txt").await.unwrap());
    bucket.write("a/b.txt", from_bytes(b"hello world")).await.unwrap();
    assert_eq!(read(&*bucket, "a/b.txt").await.unwrap(), b"hello world");
    let part = bucket.read("a/b.txt", 6, 3).await.unwrap();
    assert_eq!(part.size, 3, "the size is known before reading");
    assert_eq!(read_to_vec("a/b.txt", part).await.unwrap(), b"wor");
    assert_eq!(bucket.read("a/b.txt", 100, 5).await.unwrap().size, 0, "past the end is empty");
    bucket.write("a/b.txt", from_bytes(b"new")).await.unwrap();
    assert_eq!(bucket.stat("a/b.txt").await.unwrap().size, 3);
    assert_eq!(read(&*bucket, "a").await, Err(BlobError::NoSuchKey("a".into())), "a folder is not an object");
    assert_eq!(bucket.stat("a").await, Err(BlobError::NoSuchKey("a".into())));
    bucket.write("empty", from_bytes(Vec::new())).await.unwrap();
    assert_eq!(read(&*bucket, "empty").await.unwrap(), b"");
    assert!(bucket.exists("empty").await.unwrap());
    let other = blobs.open("other-app", "b").await.unwrap();
    assert!(!other.exists("empty").await.unwrap(), "apps are separate");
    bucket.delete("a/b.txt").await.unwrap();
    bucket.delete("a/b.txt").await.unwrap();
    assert!(!bucket.exists("a/b.txt").await.unwrap());
    bucket.write("a", from_bytes(b"a key again")).await.unwrap();
    assert_eq!(read(&*bucket, "a").await.unwrap(), b"a key again", "an emptied folder's name is a key again");
}

/// A stream bigger than one chunk is written whole, and an object is read back as a stream.
pub(crate) async fn streams(blobs: &dyn BlobBackend) {
    let bucket = blobs.open("app", "streams").await.unwrap();
    let big: Vec<u8> = (0..(3 << 20) + 17).map(|i| (i % 251) as u8).collect();
    bucket.write("big", from_bytes(big.clone())).await.unwrap();
    let object = bucket.read("big", 0, u64::MAX).await.unwrap();
    assert_eq!(object.size, big.len() as u64);
    assert_eq!(read_to_vec("big", object).await.unwrap(), big);
    let failing: super::Reader = Box::pin(Failing { left: 2 << 20 });
    assert!(matches!(bucket.write("big", failing).await, Err(BlobError::Io(_))));
    assert_eq!(read(&*bucket, "big").await.unwrap(), big, "a failed stream leaves the object as it was");
}

/// Yields `left` zero bytes, then fails.
struct Failing {
    left: usize,
}

impl AsyncRead for Failing {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if self.left == 0 {
            return std::task::Poll::Ready(Err(std::io::Error::other("source broke")));
        }
        let n = self.left.min(buf.remaining());
        buf.put_slice(&vec![0; n]);
        self.left -= n;
        std::task::Poll::Ready(Ok(()))
    }
}

/// Keys that break the rules are refused by every operation; conflicting keys are named.
pub(crate) async fn key_rules(blobs: &dyn BlobBackend) {
    let bucket = blobs.open("app", "keys").await.unwrap();
    for key in ["", "../x", "/abs", "a//b"] {
        assert!(matches!(bucket.write(key, from_bytes(b"x")).await, Err(BlobError::InvalidKey(_))), "{key:?}");
        assert!(matches!(bucket.read(key, 0, 1).await, Err(BlobError::InvalidKey(_))), "{key:?}");
        assert!(matches!(bucket.delete(key).await, Err(BlobError::InvalidKey(_))), "{key:?}");
    }
    bucket.write("f", from_bytes(b"x")).await.unwrap();
    let in_the_way = bucket.write("f/g", from_bytes(b"x")).await;
    assert_eq!(in_the_way, Err(BlobError::ObjectInTheWay { key: "f/g".into(), object: "f".into() }));
    bucket.write("d/e", from_bytes(b"x")).await.unwrap();
    let folder = bucket.write("d", from_bytes(b"x")).await;
    assert_eq!(folder, Err(BlobError::FolderInTheWay { key: "d".into(), object: "d/e".into() }));
}

/// Pages of keys by prefix, resumed by cursor, every key exactly once and in order.
pub(crate) async fn list_pages(blobs: &dyn BlobBackend) {
    let bucket = blobs.open("app", "list").await.unwrap();
    let mut all: Vec<String> = (0..12).map(|i| format!("p/{}/{i}", i % 3)).collect();
    for key in all.iter().chain(&["q".to_string()]) {
        bucket.write(key, from_bytes(key.clone().into_bytes())).await.unwrap();
    }
    let bucket = &bucket;
    let seen = crate::storage::every_page(5, |cursor| async move {
        let page = bucket.list("p/", cursor.as_deref(), 5).await.unwrap();
        (page.keys, page.cursor)
    })
    .await;
    all.sort();
    assert_eq!(seen, all);
    let everything = bucket.list("", None, MAX_PAGE as u32 + 1).await.unwrap();
    assert_eq!((everything.keys.len(), everything.cursor), (13, None));
    assert_eq!(bucket.list("p/", None, 12).await.unwrap().cursor, None, "no cursor when nothing follows");
    assert_eq!(bucket.list("zzz", None, 10).await.unwrap(), super::ListPage::default());
}

#[tokio::test]
async fn local_backend_behaves() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = super::local::LocalBlobs::new(dir.path().join("buckets"));
    write_read_delete(&blobs).await;
    streams(&blobs).await;
    key_rules(&blobs).await;
    list_pages(&blobs).await;
    assert!(dir.path().join("buckets/app/b/a").is_file(), "objects are files at BUCKETS/APP/BUCKET/KEY");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nats_backend_behaves() {
    let blobs = super::nats::NatsBlobs::new(crate::storage::nats::testing::nats().await);
    write_read_delete(&blobs).await;
    streams(&blobs).await;
    key_rules(&blobs).await;
    list_pages(&blobs).await;
}

/// Two nodes (two connections) share buckets: what one writes, 16 MiB included, the other reads
/// back byte for byte; racing writes of a key and of a key in its folder never both succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nats_nodes_share_buckets() {
    let one = crate::storage::nats::testing::nats().await;
    let two = crate::storage::nats::testing::another_node(&one).await;
    let nodes = [super::nats::NatsBlobs::new(one), super::nats::NatsBlobs::new(two)];
    let buckets = [nodes[0].open("app", "shared").await.unwrap(), nodes[1].open("app", "shared").await.unwrap()];
    let big: Vec<u8> = (0..16u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    buckets[0].write("big", from_bytes(big.clone())).await.unwrap();
    assert_eq!(buckets[1].stat("big").await.unwrap().size, big.len() as u64);
    assert_eq!(read(&*buckets[1], "big").await.unwrap(), big);
    let part = buckets[1].read("big", (9 << 20) + 5, 1000).await.unwrap();
    assert_eq!(read_to_vec("big", part).await.unwrap(), big[(9 << 20) + 5..][..1000]);
    for round in 0..8 {
        let (object, inner) = (format!("r{round}"), format!("r{round}/x"));
        let writes = [(0, object.clone()), (1, inner.clone())].map(|(node, key)| {
            let bucket = buckets[node].clone();
            tokio::spawn(async move { bucket.write(&key, from_bytes(b"x")).await })
        });
        let mut written = 0;
        for write in writes {
            match write.await.unwrap() {
                Ok(()) => written += 1,
                Err(BlobError::ObjectInTheWay { .. } | BlobError::FolderInTheWay { .. }) => {}
                Err(e) => panic!("round {round}: {e}"),
            }
        }
        let exist = [buckets[0].exists(&object).await.unwrap(), buckets[1].exists(&inner).await.unwrap()];
        assert!(written <= 1 && !(exist[0] && exist[1]), "round {round}: {written} writes succeeded, {exist:?}");
    }
}

/// A reader still streaming an object that is replaced meanwhile gets the old bytes, or an
/// error once the old chunks are purged: never the new bytes, and it does not wait forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nats_reader_of_a_replaced_object_never_hangs() {
    use tokio::io::AsyncReadExt;
    let blobs = super::nats::NatsBlobs::new(crate::storage::nats::testing::nats().await);
    let bucket = blobs.open("app", "replaced").await.unwrap();
    bucket.write("big", from_bytes(vec![1u8; 8 << 20])).await.unwrap();
    let mut object = bucket.read("big", 0, u64::MAX).await.unwrap();
    let mut first = vec![0u8; 1 << 20];
    object.reader.read_exact(&mut first).await.unwrap();
    bucket.write("big", from_bytes(vec![2u8; 8 << 20])).await.unwrap();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(10), object.reader.read_to_end(&mut rest)).await;
    match read.expect("the reader does not hang") {
        // The old chunks had all reached this node before they were purged.
        Ok(_) => assert_eq!(rest.len(), 7 << 20),
        Err(error) => assert!(error.to_string().contains("replaced or removed"), "{error}"),
    }
    assert!(rest.iter().all(|b| *b == 1), "only old bytes");
}
