//! Capture of an instance's stdout and stderr: every line goes to the
//! instance's log file, and the last few are kept in memory for failure
//! messages ("exited with code 1; last output: ...").

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncReadExt};

/// Lines longer than this are split (a process printing without newlines must
/// not grow memory without bound).
const MAX_LINE: usize = 16 * 1024;
const TAIL_LINES: usize = 10;
const TAIL_LINE_CHARS: usize = 300;

pub struct LogSink {
    file: Mutex<Option<File>>,
    tail: Mutex<VecDeque<String>>,
}

impl LogSink {
    pub fn open(path: &Path) -> Arc<LogSink> {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| tracing::warn!(path = %path.display(), "cannot open log file: {e}"))
            .ok();
        Arc::new(LogSink {
            file: Mutex::new(file),
            tail: Mutex::new(VecDeque::new()),
        })
    }

    /// A line written by Skiff itself (spawn errors and the like).
    pub fn note(&self, line: &str) {
        self.line(line.as_bytes());
    }

    fn line(&self, line: &[u8]) {
        if let Some(f) = self.file.lock().expect("log file lock").as_mut() {
            let _ = f.write_all(line).and_then(|_| f.write_all(b"\n"));
        }
        let text = String::from_utf8_lossy(line);
        let text: String = text.chars().take(TAIL_LINE_CHARS).collect();
        let mut tail = self.tail.lock().expect("log tail lock");
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(text);
    }

    /// The last lines seen, oldest first.
    pub fn tail(&self) -> Vec<String> {
        self.tail
            .lock()
            .expect("log tail lock")
            .iter()
            .cloned()
            .collect()
    }

    pub fn clear_tail(&self) {
        self.tail.lock().expect("log tail lock").clear();
    }

    /// Copy `reader` into the sink line by line until EOF.
    pub async fn pump(self: Arc<Self>, mut reader: impl AsyncRead + Unpin) {
        let mut buf = vec![0u8; 8192];
        let mut pending: Vec<u8> = Vec::new();
        loop {
            let n = match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            pending.extend_from_slice(&buf[..n]);
            let mut start = 0;
            while let Some(i) = pending[start..].iter().position(|b| *b == b'\n') {
                self.line(&pending[start..start + i]);
                start += i + 1;
            }
            pending.drain(..start);
            while pending.len() > MAX_LINE {
                let rest = pending.split_off(MAX_LINE);
                self.line(&pending);
                pending = rest;
            }
        }
        if !pending.is_empty() {
            self.line(&pending);
        }
    }
}
