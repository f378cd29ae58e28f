//! The dry-run sink: one JSON object per line on stdout, nothing else.

use std::io::Write;

use super::Delivery;

/// Writes deliveries as NDJSON to any writer (stdout in the CLI, a buffer in tests).
pub struct StdoutSink<W: Write + Send> {
    out: std::sync::Mutex<W>,
}

impl StdoutSink<std::io::Stdout> {
    pub fn stdout() -> Self {
        Self::new(std::io::stdout())
    }
}

impl<W: Write + Send> StdoutSink<W> {
    pub fn new(out: W) -> Self {
        Self { out: std::sync::Mutex::new(out) }
    }

    /// Writes one account's batch in one go, so lines of concurrent accounts never mix.
    pub fn emit(&self, batch: &[Delivery]) -> std::io::Result<()> {
        let mut text = Vec::with_capacity(batch.len() * 400);
        for d in batch {
            serde_json::to_writer(&mut text, d)?;
            text.push(b'\n');
        }
        let mut out = self.out.lock().map_err(|_| std::io::Error::other("stdout lock poisoned"))?;
        out.write_all(&text)?;
        out.flush()
    }

    pub fn into_inner(self) -> W {
        match self.out.into_inner() {
            Ok(w) => w,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}
