//! What operations see: Prometheus metrics for gRPC methods, consumers, the outbox and lag.

use std::io::{Read, Write};
use std::time::Duration;

use pos_e2e::{KAMCHATKA_CENTER, Mode, Options, Platform, e_diary_appeal};
use pos_platform::testing;

fn scrape(addr: std::net::SocketAddr) -> String {
    let mut stream = std::net::TcpStream::connect(addr).expect("metrics endpoint answers");
    stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200"), "{response}");
    response
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_cover_grpc_consumers_outbox_and_lag() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let mut options = Options::new(Mode::Embedded);
    options.metrics_addr = Some(addr);
    let platform = Platform::start_with(options).await.expect("platform starts");
    let ids = platform.submit_many(2, 2, |i| e_diary_appeal(&testing::unique(&format!("metrics-{i}")))).await.unwrap();
    platform.wait_for_tickets(KAMCHATKA_CENTER, ids.len(), Duration::from_secs(30)).await.unwrap();

    // The gauges are sampled every few seconds.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let mut text = scrape(addr);
    while !(text.contains("pos_consumer_lag") && text.contains("pos_outbox_backlog"))
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(500)).await;
        text = scrape(addr);
    }
    for expected in [
        r#"pos_grpc_requests_total{method="/pos.v1.IntakeService/SubmitAppeal",code="0"} 2"#,
        r#"pos_grpc_request_seconds_bucket{method="/pos.v1.IntakeService/SubmitAppeal""#,
        r#"pos_consumer_deliveries_total{queue="pos.events.routing.appeal-received",outcome="done"} 2"#,
        r#"pos_consumer_deliveries_total{queue="pos.events.ticketing.appeal-routed",outcome="done"} 2"#,
        r#"pos_outbox_published_total{schema="intake"}"#,
        r#"pos_consumer_lag{queue="pos.events.ticketing.appeal-routed"} 0"#,
        r#"pos_outbox_backlog{schema="ticketing"} 0"#,
    ] {
        assert!(text.contains(expected), "missing {expected} in:\n{text}");
    }
    platform.stop().await.expect("stops");
}
