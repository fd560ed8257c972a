//! Requests too big, or not text: a 100 KB URL, 1,000 headers, a query that is not UTF-8.
//! Each is a clean 4xx on its own connection, logged (once a minute per cause), and the
//! server goes on answering.

use super::{API_KEY_BODY, serve_demo};
use crate::support::http::{Conn, Response, TOKEN, TOKEN_HEADER};

async fn get(addr: std::net::SocketAddr, target: &str, headers: &[(&str, &str)]) -> Response {
    Conn::tcp(addr).await.get(target, headers).await
}

#[tokio::test]
async fn a_huge_url_a_thousand_headers_and_a_query_not_utf8_are_clean_4xx() {
    let served = serve_demo().await;
    let addr = served.addr;
    let token = [(TOKEN_HEADER, TOKEN)];
    let huge_url = format!("/secretsmanager/get?secretId={}", "a".repeat(100 * 1024));
    let names: Vec<String> = (0..1000).map(|i| format!("X-Filler-{i}")).collect();
    let mut many_headers: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "x")).collect();
    many_headers.push((TOKEN_HEADER, TOKEN));
    let mut raw_not_utf8 =
        b"GET /secretsmanager/get?secretId=\xff\xfe HTTP/1.1\r\nHost: localhost\r\n".to_vec();
    raw_not_utf8.extend(format!("{TOKEN_HEADER}: {TOKEN}\r\n\r\n").as_bytes());

    // Twice: the second round must be answered alike, and add no log line.
    for round in 1..=2 {
        let r = get(addr, &huge_url, &token).await;
        assert_eq!(
            r.status,
            414,
            "round {round}, a 100 KB URL: {}",
            r.describe()
        );
        let r = get(addr, "/secretsmanager/get?secretId=api-key", &many_headers).await;
        assert_eq!(
            r.status,
            431,
            "round {round}, 1,000 headers: {}",
            r.describe()
        );
        // Percent-encoded bytes that are not UTF-8 decode to no valid name.
        let r = get(addr, "/secretsmanager/get?secretId=%FF%FE", &token).await;
        assert_eq!(r.status, 400, "round {round}, %FF%FE: {}", r.describe());
        assert_eq!(r.json()["__type"], "InvalidParameterException");
        // The raw bytes are no valid request line at all.
        let r = Conn::tcp(addr).await.send_raw(&raw_not_utf8).await.unwrap();
        assert_eq!(
            r.status,
            400,
            "round {round}, raw 0xFF 0xFE: {}",
            r.describe()
        );
    }

    let r = get(addr, "/ping", &[]).await;
    assert_eq!((r.status, r.text()), (200, "healthy".to_owned()));
    let r = get(addr, "/secretsmanager/get?secretId=api-key", &token).await;
    assert!(
        r.status == 200 && r.body == API_KEY_BODY.as_bytes(),
        "{}",
        r.describe()
    );

    let stderr = served.stop().await;
    assert!(!stderr.contains("panicked"), "{stderr}");
    for cause in ["URI too long", "message head is too large", "invalid URI"] {
        let lines = stderr
            .lines()
            .filter(|l| l.contains("a request could not be read") && l.contains(cause))
            .count();
        assert_eq!(lines, 1, "one line for {cause:?}:\n{stderr}");
    }
    assert!(!stderr.contains(TOKEN), "the token reached the log");
}
