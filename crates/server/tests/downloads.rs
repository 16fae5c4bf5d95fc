//! Adapter downloads stream from the artifact store: ranges, ETags, and a bounded memory
//! footprint under concurrent downloads of a large file. Its own test binary, so that the
//! process's peak memory is this test's alone.

mod common;

use std::io::Write;

use common::{sentiment_jsonl, Api};
use futures::StreamExt;
use rankfit_store::{artifacts, queue};
use reqwest::StatusCode;
use serde_json::json;
use sha2::{Digest, Sha256};

const MIB: usize = 1 << 20;

/// Peak resident memory of this process so far (VmHWM), in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_adapters_stream_with_ranges_etags_and_bounded_memory() {
    let api = Api::start(1 << 20).await;
    let token = api.team("dl", false).await;
    let (_, body) = api.upload(&token, "s", "s.jsonl", sentiment_jsonl(20).as_bytes(), &[]).await;
    let ds = body["dataset"]["id"].as_str().unwrap().to_string();
    let (status, body) = api.post(&token, "/runs", json!({"dataset_id": ds, "method": "lora", "budget": 4})).await;
    assert_eq!(status, StatusCode::CREATED);
    let run = body["run"]["id"].as_str().unwrap().to_string();
    let lease = queue::claim(&api.db.pool, "w", std::time::Duration::from_secs(60)).await.unwrap().unwrap();

    // A 96 MiB "merged model", written to the store in 1 MiB blocks (never whole in memory).
    let size = 96 * MIB;
    let uri = format!("runs/{run}/adapter_merged.safetensors");
    let path = api.artifacts_dir.path().join(&uri);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let block: Vec<u8> = (0..MIB).map(|i| (i * 31 % 251) as u8).collect();
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    let mut sha = Sha256::new();
    for _ in 0..size / MIB {
        file.write_all(&block).unwrap();
        sha.update(&block);
    }
    file.flush().unwrap();
    drop(file);
    let sha: String = sha.finalize().iter().map(|b| format!("{b:02x}")).collect();
    assert!(artifacts::record(&api.db.pool, lease.run.id, lease.token, "adapter_merged", &uri, size as i64, &sha).await.unwrap());
    let url = format!("{}/runs/{run}/adapter?format=merged", api.base);

    // Ranges.
    let resp = api.http.get(&url).bearer_auth(&token).header("Range", "bytes=1000-1999").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(resp.headers()["content-range"], format!("bytes 1000-1999/{size}").as_str());
    assert_eq!(resp.bytes().await.unwrap().as_ref(), &block[1000..2000]);
    let resp = api.http.get(&url).bearer_auth(&token).header("Range", "bytes=-10").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(resp.bytes().await.unwrap().as_ref(), &block[MIB - 10..]);
    let resp = api.http.get(&url).bearer_auth(&token).header("Range", format!("bytes={size}-")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(resp.headers()["content-range"], format!("bytes */{size}").as_str());
    // ETag and conditional requests.
    let resp = api.http.head(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let etag = resp.headers()["etag"].to_str().unwrap().to_string();
    assert_eq!(etag, format!("\"{sha}\""));
    assert_eq!(resp.headers()["content-length"], size.to_string().as_str());
    assert_eq!(resp.headers()["accept-ranges"], "bytes");
    let resp = api.http.get(&url).bearer_auth(&token).header("If-None-Match", &etag).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);
    let resp = api.http.get(&url).bearer_auth(&token).header("Range", "bytes=0-9").header("If-Range", "\"other\"").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "a stale If-Range gets the whole file");
    drop(resp);

    // Eight whole downloads at once, read as streams: every byte arrives, and the process's
    // peak memory grows by far less than one copy of the file (buffered, it would be 8 × 96 MiB).
    let before = peak_rss();
    let downloads = (0..8).map(|_| {
        let (http, url, token) = (api.http.clone(), url.clone(), token.clone());
        tokio::spawn(async move {
            let resp = http.get(&url).bearer_auth(&token).send().await.unwrap();
            assert_eq!(resp.status(), StatusCode::OK);
            let mut stream = resp.bytes_stream();
            let (mut n, mut sha) = (0usize, Sha256::new());
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.unwrap();
                n += chunk.len();
                sha.update(&chunk);
            }
            (n, sha.finalize().iter().map(|b| format!("{b:02x}")).collect::<String>())
        })
    });
    for d in futures::future::join_all(downloads).await {
        assert_eq!(d.unwrap(), (size, sha.clone()));
    }
    let grown = peak_rss().saturating_sub(before);
    eprintln!("8 concurrent downloads of {} MiB: peak RSS grew by {:.1} MiB", size / MIB, grown as f64 / MIB as f64);
    assert!(grown < (size / 2) as u64, "peak RSS grew by {} MiB", grown / MIB as u64);
}
