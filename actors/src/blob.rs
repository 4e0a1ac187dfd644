//! A content-addressed blob store: frames, face crops and clips that events point at by
//! SHA-256, never carry. On local disk by default, or in an S3-compatible bucket through
//! `object_store` (several nodes then share one store).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use object_store::signer::Signer;
use object_store::{ObjectStore, ObjectStoreExt};
use sha2::{Digest, Sha256};

/// Blobs under one folder, `{root}/{aa}/{bb}/{sha256}`, or in a bucket,
/// `{prefix}/{aa}/{bb}/{sha256}`. The folder holds the clips being written in both cases.
#[derive(Debug, Clone)]
pub struct BlobStore {
    root: PathBuf,
    /// The latest write found the file system full (cleared by the next write that fits).
    full: Arc<AtomicBool>,
    /// Where blobs live when not in `root`.
    remote: Option<Remote>,
}

/// A bucket (or any object store) that holds the blobs.
#[derive(Debug, Clone)]
struct Remote {
    store: Arc<dyn ObjectStore>,
    /// Presigns GET URLs, where the store can and presigning is asked for.
    signer: Option<Arc<dyn Signer>>,
    /// Key prefix of every blob (no trailing slash; may be empty).
    prefix: String,
    /// What the store is, for logs and `/health`: `s3://bucket/prefix`.
    label: String,
}

/// Where an S3-compatible bucket is and how to reach it. Empty fields fall back to the
/// `AWS_*` environment variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
/// `AWS_REGION`, `AWS_ENDPOINT`), as the AWS tools do.
#[derive(Debug, Clone, Default)]
pub struct S3Location {
    /// The bucket.
    pub bucket: String,
    /// Key prefix under which blobs go (no leading or trailing slash; may be empty).
    pub prefix: String,
    /// The endpoint of an S3-compatible server (`http://…` allows plain HTTP); empty: AWS.
    pub endpoint: String,
    /// The region; empty: the environment's, else `us-east-1`.
    pub region: String,
    /// Access key id; empty: the environment's.
    pub access_key_id: String,
    /// Secret access key; empty: the environment's.
    pub secret_access_key: String,
    /// Hand out the store's presigned URLs for media (else Vigil's own signed URLs).
    pub presign: bool,
}

/// Why an object store could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("cannot open the S3 bucket `{bucket}`: {reason}")]
pub struct RemoteError {
    bucket: String,
    reason: String,
}

fn io_err(e: object_store::Error) -> std::io::Error {
    match e {
        object_store::Error::NotFound { .. } => {
            std::io::Error::new(std::io::ErrorKind::NotFound, e.to_string())
        }
        e => std::io::Error::other(e.to_string()),
    }
}

/// The content type a stored blob is served with: MP4 (an `ftyp` box), PNG, else JPEG.
pub fn content_type_of(head: &[u8]) -> &'static str {
    if head.get(4..8) == Some(b"ftyp") {
        "video/mp4"
    } else if head.starts_with(b"\x89PNG") {
        "image/png"
    } else {
        "image/jpeg"
    }
}

fn put_options(head: &[u8]) -> object_store::PutOptions {
    let mut attributes = object_store::Attributes::new();
    attributes.insert(
        object_store::Attribute::ContentType,
        content_type_of(head).into(),
    );
    attributes.insert(
        object_store::Attribute::CacheControl,
        "public, max-age=31536000, immutable".into(),
    );
    object_store::PutOptions {
        attributes,
        ..Default::default()
    }
}

/// Whether `e` says the file system (or the user's quota) is full.
pub fn is_storage_full(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::StorageFull
        || e.kind() == std::io::ErrorKind::QuotaExceeded
        || e.kind() == std::io::ErrorKind::FileTooLarge
}

/// Is `name` a SHA-256 in lower-case hex?
pub fn is_blob_id(name: &str) -> bool {
    name.len() == 64
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl BlobStore {
    /// A store rooted at `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            full: Arc::default(),
            remote: None,
        }
    }

    /// A store whose blobs live in `store` under `prefix`, with `root` a local folder for the
    /// clips being written; `signer` presigns media URLs.
    pub fn in_object_store(
        root: impl Into<PathBuf>,
        store: Arc<dyn ObjectStore>,
        prefix: &str,
        signer: Option<Arc<dyn Signer>>,
        label: impl Into<String>,
    ) -> Self {
        Self {
            root: root.into(),
            full: Arc::default(),
            remote: Some(Remote {
                store,
                signer,
                prefix: prefix.trim_matches('/').to_string(),
                label: label.into(),
            }),
        }
    }

    /// A store in the S3-compatible bucket `at` (see [`S3Location`]), with `root` a local
    /// folder for the clips being written. Opening reaches no server; the first request does.
    pub fn s3(root: impl Into<PathBuf>, at: &S3Location) -> Result<Self, RemoteError> {
        // A bucket that does not answer holds a camera's frame or an API request for at most
        // about ten seconds, not the library's default of three minutes.
        let retry = object_store::RetryConfig {
            max_retries: 3,
            retry_timeout: Duration::from_secs(10),
            ..Default::default()
        };
        let mut builder = object_store::aws::AmazonS3Builder::from_env()
            .with_bucket_name(&at.bucket)
            .with_retry(retry);
        if !at.endpoint.is_empty() {
            builder = builder
                .with_endpoint(&at.endpoint)
                .with_allow_http(at.endpoint.starts_with("http://"));
        }
        if !at.region.is_empty() {
            builder = builder.with_region(&at.region);
        }
        if !at.access_key_id.is_empty() {
            builder = builder.with_access_key_id(&at.access_key_id);
        }
        if !at.secret_access_key.is_empty() {
            builder = builder.with_secret_access_key(&at.secret_access_key);
        }
        let s3 = Arc::new(builder.build().map_err(|e| RemoteError {
            bucket: at.bucket.clone(),
            reason: e.to_string(),
        })?);
        let prefix = at.prefix.trim_matches('/');
        let label = if prefix.is_empty() {
            format!("s3://{}", at.bucket)
        } else {
            format!("s3://{}/{prefix}", at.bucket)
        };
        let signer = at.presign.then(|| s3.clone() as Arc<dyn Signer>);
        Ok(Self::in_object_store(root, s3, prefix, signer, label))
    }

    /// `s3://bucket/prefix` when blobs live in a bucket, else `None` (a local folder).
    pub fn remote_label(&self) -> Option<&str> {
        self.remote.as_ref().map(|r| r.label.as_str())
    }

    /// A presigned URL to GET the blob, working for `ttl` — when the blobs live in a store that
    /// presigns and presigning was asked for; `Ok(None)` otherwise.
    pub async fn presigned(&self, id: &str, ttl: Duration) -> std::io::Result<Option<String>> {
        let Some(remote) = &self.remote else {
            return Ok(None);
        };
        let Some(signer) = &remote.signer else {
            return Ok(None);
        };
        let url = signer
            .signed_url(object_store::signer::Method::GET, &remote.key(id), ttl)
            .await
            .map_err(io_err)?;
        Ok(Some(url.to_string()))
    }

    /// Whether its file system was full at the latest write. While it says so, [`Self::probe`]
    /// finds out whether room was made.
    pub fn is_full(&self) -> bool {
        self.full.load(Ordering::Relaxed)
    }

    /// Writes and removes a small file to learn whether a full file system has room again;
    /// answers whether it is full now.
    pub async fn probe(&self) -> bool {
        if !self.is_full() || self.remote.is_some() {
            return false;
        }
        let probe = self
            .root
            .join(format!(".probe.{}", uuid::Uuid::now_v7().simple()));
        let written = tokio::fs::write(&probe, [0u8; 4096]).await;
        let _ = tokio::fs::remove_file(&probe).await;
        self.noted(written).is_err()
    }

    /// Notes whether a write found the file system full.
    fn noted<T>(&self, result: std::io::Result<T>) -> std::io::Result<T> {
        match &result {
            Ok(_) => self.full.store(false, Ordering::Relaxed),
            Err(e) if is_storage_full(e) => {
                if !self.full.swap(true, Ordering::Relaxed) {
                    tracing::error!(root = %self.root.display(), "the media folder is full: pictures and clips are not stored until room is made");
                }
            }
            Err(_) => {}
        }
        result
    }

    /// The folder it writes under.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path_of(&self, id: &str) -> PathBuf {
        self.root.join(&id[..2]).join(&id[2..4]).join(id)
    }

    /// Stores `bytes` and returns their SHA-256 (hex). Writing the same bytes twice stores
    /// them once. The file appears whole or not at all (written aside, then renamed; a write
    /// that fails, on a full disk say, leaves nothing behind). A full file system is an error
    /// for which [`is_storage_full`] holds.
    pub async fn put(&self, bytes: &[u8]) -> std::io::Result<String> {
        let id = hex::encode(Sha256::digest(bytes));
        if let Some(remote) = &self.remote {
            let key = remote.key(&id);
            if remote.exists(&key).await? {
                return Ok(id);
            }
            let payload = object_store::PutPayload::from(bytes::Bytes::copy_from_slice(bytes));
            remote
                .store
                .put_opts(&key, payload, put_options(bytes))
                .await
                .map_err(io_err)?;
            return Ok(id);
        }
        let path = self.path_of(&id);
        if tokio::fs::try_exists(&path).await.unwrap_or(false) {
            return Ok(id);
        }
        let dir = path.parent().expect("blob paths have a parent");
        let written = async {
            tokio::fs::create_dir_all(dir).await?;
            let tmp = dir.join(format!(".{id}.{}", uuid::Uuid::now_v7().simple()));
            let stored = async {
                tokio::fs::write(&tmp, bytes).await?;
                tokio::fs::rename(&tmp, &path).await
            }
            .await;
            if stored.is_err() {
                let _ = tokio::fs::remove_file(&tmp).await;
            }
            stored
        }
        .await;
        self.noted(written).map(|()| id)
    }

    /// Moves the file at `path` into the store (it must be on the store's file system, as a
    /// finished clip is) and returns its SHA-256 and size. The file is hashed as it is read,
    /// never held in memory or written a second time; when the store holds the same bytes
    /// already, the file is removed.
    pub async fn put_file(&self, path: &Path) -> std::io::Result<(String, u64)> {
        use tokio::io::AsyncReadExt;
        let mut file = tokio::fs::File::open(path).await?;
        let (mut hasher, mut buffer, mut size) = (Sha256::new(), vec![0u8; 1 << 16], 0u64);
        loop {
            let n = file.read(&mut buffer).await?;
            if n == 0 {
                break;
            }
            hasher.update(&buffer[..n]);
            size += n as u64;
        }
        drop(file);
        let id = hex::encode(hasher.finalize());
        if let Some(remote) = &self.remote {
            remote.upload(&id, path).await?;
            tokio::fs::remove_file(path).await?;
            return Ok((id, size));
        }
        let dest = self.path_of(&id);
        if tokio::fs::try_exists(&dest).await.unwrap_or(false) {
            tokio::fs::remove_file(path).await?;
            return Ok((id, size));
        }
        tokio::fs::create_dir_all(dest.parent().expect("blob paths have a parent")).await?;
        tokio::fs::rename(path, &dest).await?;
        Ok((id, size))
    }

    /// Deletes the blob with this id; `false` when there was none.
    pub async fn delete(&self, id: &str) -> std::io::Result<bool> {
        if !is_blob_id(id) {
            return Ok(false);
        }
        if let Some(remote) = &self.remote {
            let key = remote.key(id);
            if !remote.exists(&key).await? {
                return Ok(false);
            }
            remote.store.delete(&key).await.map_err(io_err)?;
            return Ok(true);
        }
        match tokio::fs::remove_file(self.path_of(id)).await {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The size of the blob with this id, `None` when absent or when `id` is not a SHA-256.
    pub async fn size(&self, id: &str) -> std::io::Result<Option<u64>> {
        if !is_blob_id(id) {
            return Ok(None);
        }
        if let Some(remote) = &self.remote {
            return match remote.store.head(&remote.key(id)).await {
                Ok(meta) => Ok(Some(meta.size)),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(io_err(e)),
            };
        }
        match tokio::fs::metadata(self.path_of(id)).await {
            Ok(meta) => Ok(Some(meta.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Up to `len` bytes of the blob with this id from byte `start` (fewer at its end), read
    /// without reading the rest: a range of a clip. `None` when absent.
    pub async fn get_range(
        &self,
        id: &str,
        start: u64,
        len: u64,
    ) -> std::io::Result<Option<Vec<u8>>> {
        use tokio::io::AsyncReadExt;
        let Some(mut reader) = self.reader(id, start, len).await? else {
            return Ok(None);
        };
        let mut bytes = Vec::new();
        reader.read_to_end(&mut bytes).await?;
        Ok(Some(bytes))
    }

    /// A reader of `len` bytes of the blob from `start` on, to stream them without holding
    /// them in memory; `None` when absent or when `id` is not a SHA-256.
    pub async fn reader(
        &self,
        id: &str,
        start: u64,
        len: u64,
    ) -> std::io::Result<Option<BlobReader>> {
        use tokio::io::{AsyncReadExt, AsyncSeekExt};
        if !is_blob_id(id) {
            return Ok(None);
        }
        if let Some(remote) = &self.remote {
            return remote.reader(id, start, len).await;
        }
        let mut file = match tokio::fs::File::open(self.path_of(id)).await {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        file.seek(std::io::SeekFrom::Start(start)).await?;
        Ok(Some(Box::pin(file.take(len))))
    }

    /// The blob with this id, `None` when absent or when `id` is not a SHA-256.
    pub async fn get(&self, id: &str) -> std::io::Result<Option<Vec<u8>>> {
        if !is_blob_id(id) {
            return Ok(None);
        }
        if let Some(remote) = &self.remote {
            return match remote.store.get(&remote.key(id)).await {
                Ok(got) => Ok(Some(got.bytes().await.map_err(io_err)?.to_vec())),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(io_err(e)),
            };
        }
        match tokio::fs::read(self.path_of(id)).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// A reader of part of a blob (a file, or a bucket's response body).
pub type BlobReader = std::pin::Pin<Box<dyn tokio::io::AsyncRead + Send>>;

impl Remote {
    fn key(&self, id: &str) -> object_store::path::Path {
        let key = format!("{}/{}/{id}", &id[..2], &id[2..4]);
        if self.prefix.is_empty() {
            object_store::path::Path::from(key)
        } else {
            object_store::path::Path::from(format!("{}/{key}", self.prefix))
        }
    }

    async fn exists(&self, key: &object_store::path::Path) -> std::io::Result<bool> {
        match self.store.head(key).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(io_err(e)),
        }
    }

    /// Uploads the file at `path` as blob `id` (multipart for a large clip), unless the store
    /// holds it already.
    async fn upload(&self, id: &str, path: &Path) -> std::io::Result<()> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let key = self.key(id);
        if self.exists(&key).await? {
            return Ok(());
        }
        let mut file = tokio::fs::File::open(path).await?;
        let mut head = [0u8; 8];
        let n = file.read(&mut head).await?;
        let mut writer = object_store::buffered::BufWriter::new(self.store.clone(), key)
            .with_attributes(put_options(&head[..n]).attributes);
        writer.write_all(&head[..n]).await?;
        let copied = tokio::io::copy(&mut file, &mut writer).await;
        match copied {
            Ok(_) => writer.shutdown().await,
            Err(e) => {
                let _ = writer.abort().await;
                Err(e)
            }
        }
    }

    async fn reader(&self, id: &str, start: u64, len: u64) -> std::io::Result<Option<BlobReader>> {
        use futures::TryStreamExt;
        if len == 0 {
            return Ok(Some(Box::pin(tokio::io::empty())));
        }
        let options = object_store::GetOptions {
            range: Some(object_store::GetRange::Bounded(
                start..start.saturating_add(len),
            )),
            ..Default::default()
        };
        let got = match self.store.get_opts(&self.key(id), options).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(io_err(e)),
        };
        let stream = got.into_stream().map_err(io_err);
        Ok(Some(Box::pin(tokio_util::io::StreamReader::new(stream))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_file_moves_in_under_its_hash() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::new(dir.path().join("blobs"));
        let bytes: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let file = dir.path().join("clip.mp4");
        std::fs::write(&file, &bytes).unwrap();
        let (id, size) = store.put_file(&file).await.unwrap();
        assert_eq!(id, hex::encode(Sha256::digest(&bytes)));
        assert_eq!(size, 200_000);
        assert!(!file.exists(), "moved, not copied");
        assert_eq!(store.get(&id).await.unwrap().unwrap(), bytes);
        // The same bytes again: the store keeps its copy, the file goes.
        std::fs::write(&file, &bytes).unwrap();
        assert_eq!(store.put_file(&file).await.unwrap().0, id);
        assert!(!file.exists());
    }

    #[tokio::test]
    async fn a_range_is_read_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::new(dir.path());
        let id = store.put(b"0123456789").await.unwrap();
        assert_eq!(store.size(&id).await.unwrap(), Some(10));
        assert_eq!(store.get_range(&id, 3, 4).await.unwrap().unwrap(), b"3456");
        assert_eq!(store.get_range(&id, 8, 4).await.unwrap().unwrap(), b"89");
        let absent = "0".repeat(64);
        assert_eq!(store.size(&absent).await.unwrap(), None);
        assert_eq!(store.get_range(&absent, 0, 1).await.unwrap(), None);
        assert_eq!(store.size("not-a-sha").await.unwrap(), None);
    }

    #[tokio::test]
    async fn stores_by_content_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::new(dir.path());
        let a = store.put(b"frame one").await.unwrap();
        let again = store.put(b"frame one").await.unwrap();
        assert_eq!(a, again);
        assert!(is_blob_id(&a));
        assert_eq!(
            store.get(&a).await.unwrap().as_deref(),
            Some(&b"frame one"[..])
        );
        let b = store.put(b"frame two").await.unwrap();
        assert_ne!(a, b);
        assert_eq!(store.get(&"0".repeat(64)).await.unwrap(), None);
        assert_eq!(store.get("../../etc/passwd").await.unwrap(), None);
        let files = walk(dir.path());
        assert_eq!(files, 2, "one file per distinct blob, no temporaries left");
    }

    #[tokio::test]
    async fn a_bucket_holds_blobs_under_the_prefix_and_serves_ranges() {
        let dir = tempfile::tempdir().unwrap();
        let memory = Arc::new(object_store::memory::InMemory::new());
        let store = BlobStore::in_object_store(
            dir.path(),
            memory.clone(),
            "/site-a/media/",
            None,
            "memory",
        );
        assert_eq!(store.remote_label(), Some("memory"));
        let id = store.put(b"\xff\xd8 a jpeg").await.unwrap();
        assert_eq!(
            store.put(b"\xff\xd8 a jpeg").await.unwrap(),
            id,
            "stored once"
        );
        let key =
            object_store::path::Path::from(format!("site-a/media/{}/{}/{id}", &id[..2], &id[2..4]));
        let meta = memory
            .head(&key)
            .await
            .expect("under the prefix, fanned out");
        assert_eq!(meta.size, 9);
        let attributes = memory.get(&key).await.unwrap().attributes;
        assert_eq!(
            attributes
                .get(&object_store::Attribute::ContentType)
                .map(|v| v.as_ref()),
            Some("image/jpeg")
        );
        assert_eq!(store.size(&id).await.unwrap(), Some(9));
        assert_eq!(store.get_range(&id, 2, 3).await.unwrap().unwrap(), b" a ");
        assert_eq!(store.get_range(&id, 7, 40).await.unwrap().unwrap(), b"eg");
        assert_eq!(store.get(&id).await.unwrap().unwrap(), b"\xff\xd8 a jpeg");
        // A clip is uploaded from its file, typed by its `ftyp` box, and the file goes.
        let mut clip = b"\0\0\0\x18ftypisom".to_vec();
        clip.extend((0..300_000u32).map(|i| (i % 241) as u8));
        let file = dir.path().join("clip.mp4");
        std::fs::write(&file, &clip).unwrap();
        let (clip_id, size) = store.put_file(&file).await.unwrap();
        assert_eq!(size as usize, clip.len());
        assert!(!file.exists());
        assert_eq!(store.get(&clip_id).await.unwrap().unwrap(), clip);
        let head = memory
            .get(&store.remote.as_ref().unwrap().key(&clip_id))
            .await
            .unwrap();
        assert_eq!(
            head.attributes
                .get(&object_store::Attribute::ContentType)
                .map(|v| v.as_ref()),
            Some("video/mp4")
        );
        // Deleting answers whether there was something to delete.
        assert!(store.delete(&id).await.unwrap());
        assert!(!store.delete(&id).await.unwrap());
        assert_eq!(store.size(&id).await.unwrap(), None);
        assert_eq!(store.get(&id).await.unwrap(), None);
        assert!(store.reader(&id, 0, 4).await.unwrap().is_none());
        assert_eq!(
            store
                .presigned(&clip_id, Duration::from_secs(60))
                .await
                .unwrap(),
            None,
            "no signer"
        );
        assert!(!store.probe().await, "a bucket is never full");
    }

    fn walk(dir: &Path) -> usize {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                if e.file_type().unwrap().is_dir() {
                    walk(&e.path())
                } else {
                    1
                }
            })
            .sum()
    }
}
