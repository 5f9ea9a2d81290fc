//! Streaming instance logs over the admin API: the files' contents, then (when
//! following) new lines as they are written.

use std::collections::HashMap;
use std::future::Future;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame};
use tokio::sync::mpsc;

/// A response body fed by a channel.
pub struct ChannelBody(pub mpsc::Receiver<Bytes>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.0.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

/// Which files to show, re-evaluated while following (new instances and
/// revisions appear). Each file is labelled `revision/instance`. `None`: the
/// object is gone, the stream ends.
pub type FileLister =
    Box<dyn Fn() -> Pin<Box<dyn Future<Output = Option<Vec<(String, PathBuf)>>> + Send>> + Send>;

/// Copy the files into `tx`, prefixing lines with their label when there is
/// more than one file; keep polling for growth when `follow`.
pub async fn pump(list: FileLister, follow: bool, tx: mpsc::Sender<Bytes>) {
    let mut offsets: HashMap<PathBuf, u64> = HashMap::new();
    loop {
        let Some(files) = list().await else {
            return;
        };
        let prefix = files.len() > 1;
        for (label, path) in &files {
            let offset = offsets.entry(path.clone()).or_insert(0);
            let Some((chunk, read)) = read_from(path, *offset) else {
                continue;
            };
            // Only whole lines; a partial last line waits for its newline.
            let upto = match chunk.iter().rposition(|b| *b == b'\n') {
                Some(i) => i + 1,
                None if !follow => chunk.len(),
                None => 0,
            };
            if upto == 0 {
                continue;
            }
            *offset += upto as u64;
            let _ = read;
            let text = &chunk[..upto];
            let out = if prefix {
                let mut o = Vec::with_capacity(text.len() + 32);
                for line in text.split_inclusive(|b| *b == b'\n') {
                    o.extend_from_slice(format!("[{label}] ").as_bytes());
                    o.extend_from_slice(line);
                }
                if !o.ends_with(b"\n") {
                    o.push(b'\n');
                }
                o
            } else {
                text.to_vec()
            };
            if tx.send(Bytes::from(out)).await.is_err() {
                return;
            }
        }
        if !follow {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            _ = tx.closed() => return,
        }
    }
}

fn read_from(path: &PathBuf, offset: u64) -> Option<(Vec<u8>, usize)> {
    let mut f = std::fs::File::open(path).ok()?;
    let len = f.metadata().ok()?.len();
    if len <= offset {
        return None;
    }
    f.seek(SeekFrom::Start(offset)).ok()?;
    let mut buf = Vec::with_capacity((len - offset).min(4 << 20) as usize);
    let n = f.take(4 << 20).read_to_end(&mut buf).ok()?;
    Some((buf, n))
}
