//! NDJSON files for archives: the same lines a dry run prints, appended to
//! `wearbridge-<UTC time>.ndjson` in one directory, with a new file started when the
//! current one would exceed the size limit. A message counts as delivered once its file
//! is synced to disk, so a crash can repeat lines but never lose one.

use std::path::{Path, PathBuf};

use tokio::fs::{File, OpenOptions};
use tokio::io::{AsyncWriteExt, BufWriter};

use super::SendError;
use crate::clock::Clock;
use crate::store::OutboxEntry;

/// Writes size-rotated NDJSON files into one directory.
#[derive(Debug)]
pub struct FileSink {
    dir: PathBuf,
    max_bytes: u64,
    current: Option<(BufWriter<File>, u64)>,
    /// Files started by this sink (to keep names unique within one second).
    started: u64,
    /// Names new files by their start time.
    clock: Clock,
}

impl FileSink {
    /// `location` is `streamr.url`: `file:///dir` or a plain path.
    pub fn new(location: &str, max_bytes: u64, clock: Clock) -> Self {
        let dir = url::Url::parse(location)
            .ok()
            .filter(|u| u.scheme() == "file")
            .and_then(|u| u.to_file_path().ok())
            .unwrap_or_else(|| PathBuf::from(location));
        Self { dir, max_bytes, current: None, started: 0, clock }
    }

    /// The directory written to.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Checks that the archive directory can be created and written.
    pub async fn check(&self) -> Result<(), SendError> {
        tokio::fs::create_dir_all(&self.dir).await.map_err(|e| io_error(&self.dir, "cannot create", &e))?;
        let probe = self.dir.join(format!(".wearbridge-check-{}", std::process::id()));
        tokio::fs::write(&probe, b"").await.map_err(|e| refused(&self.dir, &e))?;
        let _ = tokio::fs::remove_file(&probe).await;
        Ok(())
    }

    /// Appends one line (`{"stream":…,"partition_key":…,"message":…}`).
    pub async fn write(&mut self, entry: &OutboxEntry) -> Result<(), SendError> {
        let line = line(entry)?;
        let len = line.len() as u64;
        if self.current.as_ref().is_some_and(|(_, size)| size + len > self.max_bytes && *size > 0) {
            self.sync().await?;
            self.current = None;
        }
        if self.current.is_none() {
            self.current = Some((BufWriter::with_capacity(256 * 1024, self.start().await?), 0));
        }
        if let Some((file, size)) = self.current.as_mut() {
            if let Err(e) = file.write_all(&line).await {
                // Part of the line may be buffered: start a new file for the retry, so
                // no file ends with half a line followed by the whole one.
                self.current = None;
                return Err(io_error(&self.dir, "cannot write to", &e));
            }
            *size += len;
        }
        Ok(())
    }

    /// Flushes and syncs the current file: everything written is now on disk.
    pub async fn sync(&mut self) -> Result<(), SendError> {
        let Some((file, _)) = self.current.as_mut() else { return Ok(()) };
        let result = match file.flush().await {
            Ok(()) => file.get_ref().sync_data().await,
            Err(e) => Err(e),
        };
        result.map_err(|e| io_error(&self.dir, "cannot sync", &e))
    }

    async fn start(&mut self) -> Result<File, SendError> {
        tokio::fs::create_dir_all(&self.dir).await.map_err(|e| io_error(&self.dir, "cannot create", &e))?;
        self.started += 1;
        let name = format!(
            "wearbridge-{}-{}-{:04}.ndjson",
            self.clock.now().format("%Y%m%dT%H%M%S%.3fZ"),
            std::process::id(),
            self.started
        );
        let path = self.dir.join(name);
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .await
            .map_err(|e| io_error(&self.dir, "cannot create", &e))?;
        // Make the new file's directory entry durable too.
        if let Ok(dir) = File::open(&self.dir).await {
            let _ = dir.sync_all().await;
        }
        Ok(file)
    }
}

fn refused(dir: &Path, e: &std::io::Error) -> SendError {
    SendError::Refused(format!("cannot write to the archive directory {} (streamr.url): {e}", dir.display()))
}

fn io_error(dir: &Path, what: &str, e: &std::io::Error) -> SendError {
    SendError::Transient(format!("{what} the archive directory {} (streamr.url): {e}", dir.display()))
}

fn line(entry: &OutboxEntry) -> Result<Vec<u8>, SendError> {
    let message = serde_json::value::RawValue::from_string(entry.payload.clone())
        .map_err(|e| SendError::Rejected(format!("the outbox payload is not JSON: {e}")))?;
    let delivery = super::Delivery {
        stream: entry.stream.clone(),
        partition_key: entry.partition_key.clone(),
        message,
        message_id: entry.message_id.clone(),
    };
    let mut line = serde_json::to_vec(&delivery).map_err(|e| SendError::Rejected(e.to_string()))?;
    line.push(b'\n');
    Ok(line)
}
