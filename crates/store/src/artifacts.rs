//! The artifact store (dataset files, adapters, checkpoints) behind `object_store`:
//! a local directory by default, any S3-compatible service with the `s3` feature.
//! Rows in the `artifact` table point at keys in it.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutPayload};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use crate::{Result, StoreError};

/// An object's bytes as a stream, with the object's size and the range the stream covers.
pub struct ObjectStream {
    pub size: u64,
    pub range: std::ops::Range<u64>,
    pub body: futures::stream::BoxStream<'static, Result<Bytes>>,
}

/// Uploads larger than this go up in parts of this size (multipart on S3).
const UPLOAD_PART: usize = 8 << 20;

/// Where artifacts live. `uri`s stored in the database are keys relative to the store.
#[derive(Clone, Debug)]
pub struct ArtifactStore {
    inner: Arc<dyn ObjectStore>,
    description: String,
}

impl ArtifactStore {
    /// `file:///abs/dir`, a plain path, or (feature `s3`) `s3://bucket[/prefix]` configured
    /// from the usual AWS_* environment variables (AWS_ENDPOINT for MinIO).
    pub fn open(location: &str) -> Result<Self> {
        if let Some(rest) = location.strip_prefix("s3://") {
            return Self::open_s3(rest);
        }
        let dir = location.strip_prefix("file://").unwrap_or(location);
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Object(object_store::Error::Generic { store: "local", source: Box::new(e) }))?;
        let fs = LocalFileSystem::new_with_prefix(dir)?;
        Ok(Self { inner: Arc::new(fs), description: format!("file://{dir}") })
    }

    #[cfg(feature = "s3")]
    fn open_s3(rest: &str) -> Result<Self> {
        use object_store::aws::AmazonS3Builder;
        use object_store::prefix::PrefixStore;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let s3 = AmazonS3Builder::from_env().with_bucket_name(bucket).with_allow_http(true).build()?;
        let inner: Arc<dyn ObjectStore> =
            if prefix.is_empty() { Arc::new(s3) } else { Arc::new(PrefixStore::new(s3, prefix.trim_end_matches('/'))) };
        Ok(Self { inner, description: format!("s3://{rest}") })
    }

    #[cfg(not(feature = "s3"))]
    fn open_s3(rest: &str) -> Result<Self> {
        Err(StoreError::BadUri(format!("s3://{rest}: this build of rankfit has no S3 support (build with --features s3)")))
    }

    pub fn describe(&self) -> &str {
        &self.description
    }

    fn key(uri: &str) -> Result<ObjectPath> {
        if uri.is_empty() || uri.split('/').any(|p| p.is_empty() || p == "." || p == "..") {
            return Err(StoreError::BadUri(uri.to_string()));
        }
        ObjectPath::parse(uri).map_err(|_| StoreError::BadUri(uri.to_string()))
    }

    pub async fn put(&self, uri: &str, data: Bytes) -> Result<()> {
        self.inner.put(&Self::key(uri)?, PutPayload::from(data)).await?;
        Ok(())
    }

    /// Uploads the file at `path` in parts as it is read (never whole in memory), returning
    /// its size and sha256.
    pub async fn put_file(&self, uri: &str, path: &Path) -> Result<(i64, String)> {
        use sha2::Digest;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let io = |e: std::io::Error| StoreError::Object(object_store::Error::Generic { store: "local", source: Box::new(e) });
        let mut file = tokio::fs::File::open(path).await.map_err(io)?;
        let mut out = object_store::buffered::BufWriter::with_capacity(self.inner.clone(), Self::key(uri)?, UPLOAD_PART);
        let (mut sha, mut len) = (sha2::Sha256::new(), 0i64);
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = file.read(&mut buf).await.map_err(io)?;
            if n == 0 {
                break;
            }
            sha.update(&buf[..n]);
            len += n as i64;
            if let Err(e) = out.write_all(&buf[..n]).await {
                let _ = out.abort().await;
                return Err(io(e));
            }
        }
        out.shutdown().await.map_err(io)?;
        Ok((len, sha.finalize().iter().map(|b| format!("{b:02x}")).collect()))
    }

    pub async fn get(&self, uri: &str) -> Result<Bytes> {
        Ok(self.inner.get(&Self::key(uri)?).await?.bytes().await?)
    }

    /// Streams `uri` (or the bytes `range` of it) without holding it in memory: what
    /// downloads are served from.
    pub async fn stream(&self, uri: &str, range: Option<std::ops::Range<u64>>) -> Result<ObjectStream> {
        use futures::{StreamExt, TryStreamExt};
        let opts = object_store::GetOptions { range: range.map(object_store::GetRange::Bounded), ..Default::default() };
        let got = self.inner.get_opts(&Self::key(uri)?, opts).await?;
        Ok(ObjectStream { size: got.meta.size, range: got.range.clone(), body: got.into_stream().map_err(StoreError::from).boxed() })
    }

    /// Size in bytes of `uri`.
    pub async fn size(&self, uri: &str) -> Result<u64> {
        Ok(self.inner.head(&Self::key(uri)?).await?.size)
    }

    /// Deletes `uri`; a missing object is not an error.
    pub async fn delete(&self, uri: &str) -> Result<()> {
        match self.inner.delete(&Self::key(uri)?).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn exists(&self, uri: &str) -> Result<bool> {
        match self.inner.head(&Self::key(uri)?).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct ArtifactRow {
    pub id: Uuid,
    pub run_id: Uuid,
    pub kind: String,
    pub uri: String,
    pub bytes: i64,
    pub sha256: String,
    pub created_at: DateTime<Utc>,
}

/// Records an uploaded artifact for a leased run (upsert per kind). False if the lease is lost.
pub async fn record(pool: &PgPool, run_id: Uuid, token: Uuid, kind: &str, uri: &str, bytes: i64, sha256: &str) -> Result<bool> {
    let done = sqlx::query(
        "insert into artifact (id, run_id, kind, uri, bytes, sha256)
         select $3, $1, $4, $5, $6, $7 where exists (select 1 from run where id = $1 and lease_token = $2)
         on conflict (run_id, kind) do update set uri = excluded.uri, bytes = excluded.bytes, sha256 = excluded.sha256, created_at = now()",
    )
    .bind(run_id)
    .bind(token)
    .bind(Uuid::new_v4())
    .bind(kind)
    .bind(uri)
    .bind(bytes)
    .bind(sha256)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn list(pool: &PgPool, run_id: Uuid) -> Result<Vec<ArtifactRow>> {
    Ok(sqlx::query_as("select id, run_id, kind, uri, bytes, sha256, created_at from artifact where run_id = $1 order by kind")
        .bind(run_id)
        .fetch_all(pool)
        .await?)
}

pub async fn get(pool: &PgPool, run_id: Uuid, kind: &str) -> Result<ArtifactRow> {
    sqlx::query_as("select id, run_id, kind, uri, bytes, sha256, created_at from artifact where run_id = $1 and kind = $2")
        .bind(run_id)
        .bind(kind)
        .fetch_optional(pool)
        .await?
        .ok_or(StoreError::NotFound)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file larger than one upload part goes up in parts and comes back byte for byte, with
    /// the size and sha256 of what was read; ranges stream the right bytes.
    #[tokio::test]
    async fn put_file_uploads_in_parts_and_streams_back() {
        use futures::TryStreamExt;
        let root = tempfile::tempdir().unwrap();
        let store = ArtifactStore::open(root.path().join("store").to_str().unwrap()).unwrap();
        let data: Vec<u8> = (0..UPLOAD_PART * 2 + 12345).map(|i| (i % 253) as u8).collect();
        let src = root.path().join("big.bin");
        std::fs::write(&src, &data).unwrap();
        let (len, sha) = store.put_file("runs/x/big.bin", &src).await.unwrap();
        assert_eq!((len as usize, sha.as_str()), (data.len(), crate::sha256_hex(&data).as_str()));
        assert_eq!(store.get("runs/x/big.bin").await.unwrap().as_ref(), &data[..]);
        assert_eq!(store.size("runs/x/big.bin").await.unwrap(), data.len() as u64);
        let part = store.stream("runs/x/big.bin", Some(10..20)).await.unwrap();
        assert_eq!((part.size, part.range.clone()), (data.len() as u64, 10..20));
        let got: Vec<Bytes> = part.body.try_collect().await.unwrap();
        assert_eq!(got.concat(), &data[10..20]);
        assert!(store.put_file("runs/x/missing.bin", &root.path().join("nope")).await.is_err());
        assert!(!store.exists("runs/x/missing.bin").await.unwrap(), "a failed upload leaves nothing");
    }
}
