//! A content-addressed blob store on local disk: frames and face crops that events point at
//! by SHA-256, never carry.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use sha2::{Digest, Sha256};

/// Blobs under one folder: `{root}/{aa}/{bb}/{sha256}`.
#[derive(Debug, Clone)]
pub struct BlobStore {
    root: PathBuf,
    /// The latest write found the file system full (cleared by the next write that fits).
    full: Arc<AtomicBool>,
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
        }
    }

    /// Whether its file system was full at the latest write. While it says so, [`Self::probe`]
    /// finds out whether room was made.
    pub fn is_full(&self) -> bool {
        self.full.load(Ordering::Relaxed)
    }

    /// Writes and removes a small file to learn whether a full file system has room again;
    /// answers whether it is full now.
    pub async fn probe(&self) -> bool {
        if !self.is_full() {
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
    ) -> std::io::Result<Option<tokio::io::Take<tokio::fs::File>>> {
        use tokio::io::{AsyncReadExt, AsyncSeekExt};
        if !is_blob_id(id) {
            return Ok(None);
        }
        let mut file = match tokio::fs::File::open(self.path_of(id)).await {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        file.seek(std::io::SeekFrom::Start(start)).await?;
        Ok(Some(file.take(len)))
    }

    /// The blob with this id, `None` when absent or when `id` is not a SHA-256.
    pub async fn get(&self, id: &str) -> std::io::Result<Option<Vec<u8>>> {
        if !is_blob_id(id) {
            return Ok(None);
        }
        match tokio::fs::read(self.path_of(id)).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
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
