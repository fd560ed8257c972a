//! The connection limit (`--max-conn`) and idle clients (`--http-header-timeout`).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::{API_KEY_BODY, serve};
use crate::support::cli::demo_source;
use crate::support::http::{Conn, Response, TOKEN, TOKEN_HEADER};

/// `GET TARGET` with the token on each connection, one after the other: each is answered
/// the api-key body.
async fn each_gets_the_api_key(conns: [&mut Conn; 2], target: &str) {
    for conn in conns {
        let r = conn.get(target, &[(TOKEN_HEADER, TOKEN)]).await;
        assert!(
            r.status == 200 && r.body == API_KEY_BODY.as_bytes(),
            "{}",
            r.describe()
        );
    }
}

/// `GET TARGET` with the token on a new connection, again every 50 ms for up to 10 s while it
/// is answered 429: the first other answer (or the last 429).
async fn get_once_a_slot_is_free(addr: SocketAddr, target: &str) -> Response {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = Conn::tcp(addr)
            .await
            .get(target, &[(TOKEN_HEADER, TOKEN)])
            .await;
        if r.status != 429 || Instant::now() > deadline {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_connection_limit_answers_429_except_to_ping() {
    let served = serve(&["--source", &demo_source()], &["--max-conn", "2"]).await;
    let addr = served.addr;
    let get = "/secretsmanager/get?secretId=api-key";
    let token = [(TOKEN_HEADER, TOKEN)];
    let mut first = Conn::tcp(addr).await;
    let mut second = Conn::tcp(addr).await;
    each_gets_the_api_key([&mut first, &mut second], get).await;

    let r = Conn::tcp(addr).await.get(get, &token).await;
    assert_eq!(
        (r.status, r.text()),
        (429, "Connection limit exceeded".to_owned())
    );
    let r = Conn::tcp(addr).await.get(get, &[]).await;
    assert_eq!(
        (r.status, r.text()),
        (429, "Connection limit exceeded".to_owned()),
        "the limit comes before the token"
    );
    let r = Conn::tcp(addr).await.get("/ping", &[]).await;
    assert_eq!((r.status, r.text()), (200, "healthy".to_owned()));

    // The two connections still work (keep-alive).
    each_gets_the_api_key([&mut first, &mut second], get).await;

    drop(first);
    let r = get_once_a_slot_is_free(addr, get).await;
    assert!(
        r.status == 200 && r.body == API_KEY_BODY.as_bytes(),
        "after a connection closed: {} {}",
        r.status,
        r.describe()
    );
    drop(second);
}

#[tokio::test]
async fn an_idle_client_is_cut_off_and_its_slot_released() {
    let served = serve(
        &["--source", &demo_source()],
        &["--max-conn", "1", "--http-header-timeout", "1"],
    )
    .await;
    let addr = served.addr;
    let get = "/secretsmanager/get?secretId=api-key";
    let mut idle = Conn::tcp(addr).await;
    let cut_off_by = Instant::now() + Duration::from_secs(4);
    // The silent client holds the only slot, unless it has been cut off already.
    let probe = Conn::tcp(addr)
        .await
        .get(get, &[(TOKEN_HEADER, TOKEN)])
        .await;
    if probe.status != 429 {
        assert!(
            idle.closed_within(Duration::ZERO).await.is_ok(),
            "a second connection was served ({}) while the first held the only slot",
            probe.status
        );
    }
    let closed = idle
        .closed_within(cut_off_by.saturating_duration_since(Instant::now()))
        .await;
    assert!(
        closed.is_ok(),
        "the server kept a silent connection open for 4 s (header timeout 1 s)"
    );

    let r = get_once_a_slot_is_free(addr, get).await;
    assert!(
        r.status == 200 && r.body == API_KEY_BODY.as_bytes(),
        "after the idle client was cut off: {} {}",
        r.status,
        r.describe()
    );
}

/// More idle connections than `--max-conn` (800 by default) hold every slot: /ping is still
/// answered and a new client is told 429, not left hanging; once the idle ones close, a new
/// client is served.
#[tokio::test]
async fn nine_hundred_idle_connections_stop_neither_ping_nor_new_clients_once_they_close() {
    const IDLE: usize = 900;
    // The header timeout must not close them first: they close themselves.
    let served = serve(
        &["--source", &demo_source()],
        &["--http-header-timeout", "120"],
    )
    .await;
    let addr = served.addr;
    let get = "/secretsmanager/get?secretId=api-key";
    let mut idle = Vec::with_capacity(IDLE);
    for _ in 0..IDLE {
        idle.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    // Accepted in order: these come after every idle one, over the limit.
    let r = Conn::tcp(addr).await.get("/ping", &[]).await;
    assert_eq!((r.status, r.text()), (200, "healthy".to_owned()));
    let r = Conn::tcp(addr)
        .await
        .get(get, &[(TOKEN_HEADER, TOKEN)])
        .await;
    assert_eq!(
        (r.status, r.text()),
        (429, "Connection limit exceeded".to_owned())
    );

    drop(idle);
    let closed = Instant::now();
    let r = get_once_a_slot_is_free(addr, get).await;
    assert!(
        r.status == 200 && r.body == API_KEY_BODY.as_bytes(),
        "after the idle connections closed: {}",
        r.describe()
    );
    println!(
        "storm figure: {IDLE} idle connections (max_conn 800): /ping 200 and a new client 429 \
         while they were open; a new client served {:?} after they closed",
        closed.elapsed()
    );
    let stderr = served.stop().await;
    assert!(!stderr.contains("panicked"), "{stderr}");
    let lines = stderr
        .lines()
        .filter(|l| l.contains("the connection limit is reached"))
        .count();
    assert_eq!(
        lines, 1,
        "one line, not one per connection refused:\n{stderr}"
    );
}
