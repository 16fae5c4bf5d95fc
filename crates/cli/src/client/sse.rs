//! Server-sent events: a frame parser, and a reader that reconnects after a dropped
//! connection with `Last-Event-ID`, so that no logged event is missed or repeated.

use std::time::Duration;

use futures::StreamExt;

use super::Client;

/// One event as the server sent it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: String,
    pub data: String,
}

/// Incremental parser of the `text/event-stream` format (WHATWG): bytes in, whole events out.
#[derive(Default)]
pub struct Parser {
    buf: Vec<u8>,
    current: SseEvent,
    has_data: bool,
}

impl Parser {
    pub fn push(&mut self, bytes: &[u8]) -> Vec<SseEvent> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(nl) = self.buf.iter().position(|b| *b == b'\n') {
            let mut line: Vec<u8> = self.buf.drain(..=nl).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let line = String::from_utf8_lossy(&line).into_owned();
            if line.is_empty() {
                if self.has_data {
                    let mut ev = std::mem::take(&mut self.current);
                    if ev.event.is_empty() {
                        ev.event = "message".into();
                    }
                    out.push(ev);
                } else {
                    self.current = SseEvent::default();
                }
                self.has_data = false;
                continue;
            }
            if line.starts_with(':') {
                continue; // comment (keep-alive)
            }
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f.to_string(), v.strip_prefix(' ').unwrap_or(v).to_string()),
                None => (line.clone(), String::new()),
            };
            match field.as_str() {
                "event" => self.current.event = value,
                "id" => self.current.id = Some(value),
                "data" => {
                    if self.has_data {
                        self.current.data.push('\n');
                    }
                    self.current.data.push_str(&value);
                    self.has_data = true;
                }
                _ => {}
            }
        }
        out
    }
}

/// Reads `path`'s event stream, handing each event to `on_event` until it returns
/// `Ok(true)` (done) or the server ends the stream. A dropped connection is retried
/// (up to `retries` times in a row) from the last event id seen.
pub async fn follow<F>(client: &Client, path: &str, retries: usize, mut on_event: F) -> anyhow::Result<()>
where
    F: FnMut(&SseEvent) -> anyhow::Result<bool>,
{
    let mut last_id: Option<String> = None;
    let mut failures = 0;
    loop {
        let mut req = client.get(path).header("accept", "text/event-stream");
        if let Some(id) = &last_id {
            req = req.header("last-event-id", id);
        }
        let resp = match client.send(req).await {
            Ok(r) => r,
            Err(e) if e.downcast_ref::<super::ApiError>().is_some() => return Err(e),
            Err(e) => {
                failures += 1;
                if failures > retries {
                    return Err(e);
                }
                eprintln!("\n{e}; reconnecting");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let mut parser = Parser::default();
        let mut stream = resp.bytes_stream();
        let mut dropped = None;
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(bytes) => {
                    failures = 0;
                    for ev in parser.push(&bytes) {
                        if ev.id.is_some() {
                            last_id = ev.id.clone();
                        }
                        if on_event(&ev)? {
                            return Ok(());
                        }
                    }
                }
                Err(e) => {
                    dropped = Some(e);
                    break;
                }
            }
        }
        match dropped {
            // The server ended the stream: it does so after the terminal event.
            None => return Ok(()),
            Some(e) => {
                failures += 1;
                if failures > retries {
                    return Err(anyhow::anyhow!("the event stream broke: {e}"));
                }
                eprintln!("\nthe event stream broke ({e}); resuming after event {}", last_id.as_deref().unwrap_or("0"));
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_events_split_across_chunks_with_ids_comments_and_multiline_data() {
        let mut p = Parser::default();
        assert!(p.push(b": keep-alive\n\nid: 7\nevent: sta").is_empty());
        let evs = p.push(b"tus\ndata: {\"a\":1}\r\n\nevent: progress\ndata: x\ndata: y\n\ndata:z\n\n");
        assert_eq!(
            evs,
            vec![
                SseEvent { id: Some("7".into()), event: "status".into(), data: "{\"a\":1}".into() },
                SseEvent { id: None, event: "progress".into(), data: "x\ny".into() },
                SseEvent { id: None, event: "message".into(), data: "z".into() },
            ]
        );
    }

    /// One HTTP response per connection: the first sends events 1 and 2 and breaks off
    /// mid-stream, the second must ask to resume after event 2.
    async fn flaky_server() -> (String, tokio::task::JoinHandle<Vec<Option<String>>>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let mut seen = Vec::new();
            for attempt in 0..2 {
                let (mut sock, _) = listener.accept().await.unwrap();
                let mut req = vec![0u8; 4096];
                let n = sock.read(&mut req).await.unwrap();
                let req = String::from_utf8_lossy(&req[..n]).to_ascii_lowercase();
                seen.push(req.lines().find_map(|l| l.strip_prefix("last-event-id: ").map(str::to_string)));
                let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
                sock.write_all(head.as_bytes()).await.unwrap();
                let chunk = |body: &str| format!("{:x}\r\n{body}\r\n", body.len());
                if attempt == 0 {
                    for body in ["id: 1\nevent: log\ndata: one\n\n", "id: 2\nevent: log\ndata: two\n\n"] {
                        sock.write_all(chunk(body).as_bytes()).await.unwrap();
                    }
                    sock.write_all(b"40\r\nid: 3\nevent: lo").await.unwrap(); // cut off mid-chunk
                } else {
                    sock.write_all(chunk("id: 3\nevent: status\ndata: done\n\n").as_bytes()).await.unwrap();
                    sock.write_all(b"0\r\n\r\n").await.unwrap();
                }
                sock.flush().await.unwrap();
                drop(sock);
            }
            seen
        });
        (url, server)
    }

    #[tokio::test]
    async fn a_dropped_stream_resumes_after_the_last_event_id_without_repeats() {
        let (url, server) = flaky_server().await;
        let client = Client::new(&url, "token", false);
        let mut got = Vec::new();
        follow(&client, "/events", 3, |ev| {
            got.push((ev.id.clone().unwrap_or_default(), ev.data.clone()));
            Ok(false)
        })
        .await
        .unwrap();
        let want: Vec<(String, String)> =
            [("1", "one"), ("2", "two"), ("3", "done")].iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
        assert_eq!(got, want);
        assert_eq!(server.await.unwrap(), vec![None, Some("2".to_string())], "the second request resumes after event 2");
    }

    #[test]
    fn an_event_without_data_is_dropped() {
        let mut p = Parser::default();
        assert!(p.push(b"event: ping\n\n").is_empty());
        assert_eq!(p.push(b"data: 1\n\n")[0].event, "message");
    }
}
