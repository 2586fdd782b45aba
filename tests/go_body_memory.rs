//! A Go scrape of a 100 MB expvar body (a service publishing a large expvar
//! map) decodes as it streams: the test process's peak RSS (VmHWM) grows by
//! a few MiB at most across the scrape. Alone in its test binary so no other
//! test's allocations move the peak.

use headroom::httpc::HttpClient;
use headroom::source::go::scrape;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BODY_BYTES: usize = 100_000_000;
const ALLOWED_GROWTH_KIB: u64 = 8 * 1024;

/// VmHWM of this process, KiB.
fn vm_hwm_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("reading /proc/self/status (needs Linux procfs)");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status")
}

/// Serves `filler` bytes of other expvar keys, then memstats, generated
/// on the fly from one reused 64 KiB piece (chunked encoding).
async fn serve(filler: usize) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    // One entry: a key with nested data and a long string, as a large map has.
    let entry = format!(
        "\"request.count.{}\":{{\"hits\":[1,2,3,4.5e3],\"path\":\"{}\",\"ok\":true,\"none\":null}},",
        "n".repeat(20),
        "/api/v1/items/\\u00e9\\\"x\\\"".repeat(100)
    );
    let mut piece = String::new();
    while piece.len() + entry.len() <= 64 * 1024 {
        piece.push_str(&entry);
    }
    let mut chunk = format!("{:x}\r\n", piece.len()).into_bytes();
    chunk.extend_from_slice(piece.as_bytes());
    chunk.extend_from_slice(b"\r\n");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let chunk = chunk.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 2048];
                let _ = s.read(&mut buf).await;
                let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
                let open = "{\"cmdline\":[\"/app\"],\"vars\":{";
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(format!("{:x}\r\n{open}\r\n", open.len()).as_bytes()).await;
                let piece_len = chunk.len() - format!("{:x}\r\n", 0).len();
                let mut sent = 0;
                while sent < filler {
                    if s.write_all(&chunk).await.is_err() {
                        return;
                    }
                    sent += piece_len;
                }
                let tail = "\"last\":0},\"memstats\":{\"HeapAlloc\":123456789,\"HeapInuse\":234567890,\
                            \"HeapReleased\":1024,\"PauseNs\":[1,2,3],\"BySize\":[{\"Size\":8,\"Mallocs\":1}]}}";
                let _ = s
                    .write_all(format!("{:x}\r\n{tail}\r\n0\r\n\r\n", tail.len()).as_bytes())
                    .await;
                let _ = s.shutdown().await;
            });
        }
    });
    format!("http://{addr}/debug/vars")
}

#[tokio::test]
async fn a_100_mb_expvar_body_does_not_raise_peak_rss() {
    let client = HttpClient::new();
    // Warm up: the connection, the runtime, the decoder's buffers.
    let small = serve(1 << 20).await;
    let s = scrape(&client, &small, Duration::from_secs(60)).await.unwrap();
    assert_eq!(s.heap_alloc, Some(123456789));

    let big = serve(BODY_BYTES).await;
    let before = vm_hwm_kib();
    // A generous deadline: this test measures memory, not speed (debug builds are slow).
    let s = scrape(&client, &big, Duration::from_secs(300)).await.unwrap();
    let after = vm_hwm_kib();
    assert_eq!(
        (s.heap_alloc, s.heap_inuse, s.heap_released),
        (Some(123456789), Some(234567890), Some(1024))
    );
    let growth = after.saturating_sub(before);
    eprintln!("VmHWM before {before} KiB, after {after} KiB, growth {growth} KiB across a {BODY_BYTES}-byte scrape");
    assert!(
        growth <= ALLOWED_GROWTH_KIB,
        "peak RSS grew by {growth} KiB (from {before} to {after}) across a {BODY_BYTES}-byte expvar scrape; allowed {ALLOWED_GROWTH_KIB} KiB"
    );
}
