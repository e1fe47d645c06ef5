//! Raw response bytes through fanout's HTTP client: a server on 127.0.0.1 reads each request head
//! and answers with the input, then closes; `Client::fetch` parses it (hyper), follows what it
//! says (redirects back to the same server get the same bytes), reads and decodes the body
//! (chunked, Content-Length, gzip/deflate/br/zstd, limits). Every input must end as exactly one of
//! a status or an error kind, without a panic, within the attempt's timeout.
#![no_main]

use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use fanout::Request;
use fanout::engine::client::{Client, ClientConfig};
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Harness {
    rt: tokio::runtime::Runtime,
    client: Client,
    url: String,
    /// The bytes the server answers with now. A std Mutex: held only to clone the bytes.
    answer: Arc<Mutex<Arc<[u8]>>>,
}

static HARNESS: LazyLock<Harness> = LazyLock::new(|| {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let answer: Arc<Mutex<Arc<[u8]>>> = Arc::new(Mutex::new(Arc::from(&b""[..])));
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}/fuzz", listener.local_addr().unwrap());
    let served = answer.clone();
    rt.spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                continue;
            };
            let bytes = served.lock().unwrap().clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = conn.write_all(&bytes).await;
                let _ = conn.shutdown().await;
            });
        }
    });
    let client = Client::new(ClientConfig {
        timeout: Duration::from_secs(2),
        max_body: 1 << 20,
        max_redirects: 3,
        ..ClientConfig::default()
    })
    .unwrap();
    Harness {
        rt,
        client,
        url,
        answer,
    }
});

fuzz_target!(|data: &[u8]| {
    let h = &*HARNESS;
    *h.answer.lock().unwrap() = Arc::from(data);
    // Connection: close, so no connection is reused across inputs.
    let req = Request::get(&h.url)
        .unwrap()
        .with_header("connection", "close")
        .unwrap();
    let a = h.rt.block_on(h.client.fetch(&req));
    assert!(
        a.status.is_some() != a.error.is_some(),
        "a status or an error, not both or neither: {a:?}"
    );
    assert!(a.duration < Duration::from_secs(10), "{a:?}");
});
