//! Counters from the platform's Prometheus endpoint, read with a plain HTTP/1.0 GET: the
//! endpoint is plain text on loopback, and a request or two per step needs no HTTP client.

use std::time::Duration;

use anyhow::Context as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tonic::codegen::http::Uri;

const TIMEOUT: Duration = Duration::from_secs(5);

/// The body of `GET url` (`http://host:port/path`).
pub async fn get(url: &str) -> anyhow::Result<String> {
    let uri: Uri = url.parse().with_context(|| format!("metrics URL {url:?}"))?;
    anyhow::ensure!(uri.scheme_str() == Some("http"), "metrics URL {url:?}: only http:// is supported");
    let host = uri.host().context("metrics URL without a host")?;
    let port = uri.port_u16().unwrap_or(80);
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect((host.trim_matches(['[', ']']), port)).await?;
        // HTTP/1.0 with the connection closed after the reply: the body runs to the end of the
        // stream, without chunking to undo (which `dechunk` still handles, for a proxy).
        let request = format!("GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\nAccept: text/plain\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        anyhow::Ok(response)
    };
    let response = tokio::time::timeout(TIMEOUT, exchange)
        .await
        .with_context(|| format!("GET {url}: no answer in {TIMEOUT:?}"))?
        .with_context(|| format!("GET {url}"))?;
    body(&response).with_context(|| format!("GET {url}"))
}

/// The body of a whole HTTP/1.x response, which must be `200`.
fn body(response: &[u8]) -> anyhow::Result<String> {
    let split = response.windows(4).position(|w| w == b"\r\n\r\n").context("a response without a header end")?;
    let head = String::from_utf8_lossy(&response[..split]);
    let mut lines = head.lines();
    let status = lines.next().unwrap_or_default();
    anyhow::ensure!(status.split_whitespace().nth(1) == Some("200"), "the endpoint answered {status:?}");
    let chunked = lines.any(|line| {
        line.split_once(':').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("transfer-encoding") && value.to_ascii_lowercase().contains("chunked")
        })
    });
    let raw = &response[split + 4..];
    let body = if chunked { dechunk(raw).context("a broken chunked body")? } else { raw.to_vec() };
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// Undoes `Transfer-Encoding: chunked`.
fn dechunk(mut raw: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = raw.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&raw[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        raw = &raw[line_end + 2..];
        if size == 0 {
            return Some(body);
        }
        body.extend_from_slice(raw.get(..size)?);
        raw = raw.get(size + 2..)?;
    }
}

/// The sum of every sample of metric `name` in the Prometheus text format, whatever its labels;
/// 0 when there is none (a counter appears only once first incremented).
pub fn sum_samples(text: &str, name: &str) -> f64 {
    text.lines().filter_map(|line| sample_of(line.trim_start(), name)).filter(|value| !value.is_nan()).sum()
}

/// The value of a sample line of metric `name`, else `None`.
fn sample_of(line: &str, name: &str) -> Option<f64> {
    let rest = line.strip_prefix(name)?;
    let rest = if let Some(labels) = rest.strip_prefix('{') {
        // Label values are quoted and may hold `}`, spaces and escaped quotes.
        let (mut quoted, mut escaped) = (false, false);
        let close = labels.char_indices().find_map(|(at, c)| {
            match c {
                _ if escaped => escaped = false,
                '\\' if quoted => escaped = true,
                '"' => quoted = !quoted,
                '}' if !quoted => return Some(at),
                _ => {}
            }
            None
        })?;
        &labels[close + 1..]
    } else if rest.starts_with([' ', '\t']) {
        rest
    } else {
        // Another metric whose name starts with this one's (`…_total_bytes`).
        return None;
    };
    rest.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
# HELP pos_consumer_deliveries_total Deliveries a consumer handled [queue, outcome].
# TYPE pos_consumer_deliveries_total counter
pos_consumer_deliveries_total{queue=\"routing.appeal.received\",outcome=\"done\"} 1000
pos_consumer_deliveries_total{queue=\"ticketing.appeal.routed\",outcome=\"done\"} 1000 1700000000000
pos_consumer_deliveries_total{queue=\"odd } \\\"quoted\\\" {queue\",outcome=\"duplicate\"} 3
pos_consumer_deliveries_total_extra{queue=\"x\"} 500
pos_consumer_deliveries_totals 7
# TYPE pos_db_transactions_total counter
pos_db_transactions_total{schema=\"intake\"} 2000
pos_db_transactions_total{schema=\"routing\"} 1e3
pos_db_transactions_total{schema=\"sla\"} NaN
pos_grpc_requests_total{method=\"/pos.v1.IntakeService/SubmitAppeal\",code=\"0\"} 1000
untyped_metric 4.5
";

    #[test]
    fn every_sample_of_a_metric_is_summed_whatever_its_labels() {
        assert_eq!(sum_samples(TEXT, "pos_consumer_deliveries_total"), 2003.0);
        assert_eq!(sum_samples(TEXT, "pos_db_transactions_total"), 3000.0);
        assert_eq!(sum_samples(TEXT, "untyped_metric"), 4.5);
        assert_eq!(sum_samples(TEXT, "pos_outbox_published_total"), 0.0, "absent: not counted yet");
        assert_eq!(sum_samples(TEXT, "pos_consumer"), 0.0, "a prefix of a name is not the name");
    }

    #[test]
    fn a_response_gives_its_body_plain_or_chunked() {
        let plain = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 4\r\n\r\na 1\n";
        assert_eq!(body(plain).unwrap(), "a 1\n");
        let chunked =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\na 1\n\r\n6;x=y\r\nb 22\n\n\r\n0\r\n\r\n";
        assert_eq!(body(chunked).unwrap(), "a 1\nb 22\n\n");
        assert!(body(b"HTTP/1.1 404 Not Found\r\n\r\nnope").is_err());
        assert!(body(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").is_err());
        assert!(body(b"HTTP/1.1 200 OK\r\n").is_err());
    }

    #[tokio::test]
    async fn gets_a_body_over_tcp() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = vec![0u8; 1024];
            let read = socket.read(&mut request).await.unwrap();
            socket.write_all(b"HTTP/1.0 200 OK\r\n\r\nm{a=\"b\"} 2\nm 3\n").await.unwrap();
            String::from_utf8_lossy(&request[..read]).into_owned()
        });
        let text = get(&format!("http://{addr}/metrics")).await.unwrap();
        assert_eq!(sum_samples(&text, "m"), 5.0);
        assert!(server.await.unwrap().starts_with("GET /metrics HTTP/1.0\r\n"));
        assert!(get("https://127.0.0.1:1/metrics").await.is_err());
    }
}
