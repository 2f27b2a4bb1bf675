//! Closed-loop HTTP/1.1 load generator for the receiver benchmark.
//!
//! Every request is a FusionAuth-shaped event with a fresh `event.id`
//! (so deduplication sees new ids, as in production; `--repeat-id` sends
//! one event over and over instead, FusionAuth's retry: the duplicate
//! path), the `Authorization` value, and an HS256
//! `X-FusionAuth-Signature-JWT` over the exact body.
//! Each connection sends its next request when the previous answer arrives.
//! Prints one JSON line: requests/s, p50/p99 latency (µs), status counts.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use clap::Parser;
use fusionhook_fusionauth::signature::Algorithm;
use fusionhook_tests::events::{self, sign_hmac};
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

/// Load generator for fusionhook-receiver.
#[derive(Debug, Parser)]
struct Args {
    /// Target, e.g. http://127.0.0.1:18402/events
    #[arg(long)]
    url: String,
    /// Concurrent connections.
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Measured duration, seconds.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Unmeasured warm-up, seconds.
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Authorization header value.
    #[arg(long, default_value = "bench-key")]
    key: String,
    /// HMAC secret for the signature.
    #[arg(long, default_value = "bench-hmac-secret")]
    hmac_secret: String,
    /// Event type to send.
    #[arg(long, default_value = "user.create.complete")]
    event_type: String,
    /// Send the same event (same id, same bytes) every time.
    #[arg(long)]
    repeat_id: bool,
    /// Worker threads for the generator itself.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

struct Outcome {
    histogram: Histogram<u64>,
    statuses: BTreeMap<u16, u64>,
    errors: u64,
}

fn body(kind: &str) -> Vec<u8> {
    let id = uuid::Uuid::new_v4().to_string();
    // A realistic event: ~700 bytes like a user.create.complete.
    events::event(
        kind,
        &id,
        serde_json::json!({
            "info": {"ipAddress": "10.1.2.3", "userAgent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36", "deviceType": "BROWSER"},
            "user": {
                "active": true, "email": "someone@example.test", "firstName": "Some", "lastName": "One",
                "id": "00000000-0000-0001-0000-000000000001", "insertInstant": 1_700_000_000_000_i64,
                "passwordChangeRequired": false, "tenantId": events::TENANT_ID, "twoFactor": {"methods": []},
                "usernameStatus": "ACTIVE", "verified": true,
                "registrations": [{"applicationId": "10000000-0000-0002-0000-000000000001", "id": "00000000-0000-0002-0000-000000000001", "insertInstant": 1_700_000_000_000_i64, "roles": ["user"], "usernameStatus": "ACTIVE", "verified": true}]
            }
        }),
    )
}

async fn connection(args: &Args, uri: &hyper::Uri, start: Instant, measure_from: Instant, end: Instant) -> anyhow::Result<Outcome> {
    let authority = uri.authority().context("url has no host")?.clone();
    let stream = tokio::net::TcpStream::connect(authority.as_str()).await?;
    stream.set_nodelay(true)?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let mut out = Outcome { histogram: Histogram::new(3)?, statuses: BTreeMap::new(), errors: 0 };
    let _ = start;
    let repeated = body(&args.event_type);
    let repeated_signature = sign_hmac(&repeated, Algorithm::HS256, "bench", &args.hmac_secret);
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        let (body, signature) = if args.repeat_id {
            (repeated.clone(), repeated_signature.clone())
        } else {
            let body = body(&args.event_type);
            let signature = sign_hmac(&body, Algorithm::HS256, "bench", &args.hmac_secret);
            (body, signature)
        };
        let request = hyper::Request::post(uri.clone())
            .header("host", authority.as_str())
            .header("content-type", "application/json")
            .header("authorization", &args.key)
            .header("x-fusionauth-signature-jwt", signature)
            .body(Full::new(Bytes::from(body)))?;
        let sent = Instant::now();
        sender.ready().await?;
        match sender.send_request(request).await {
            Ok(response) => {
                let status = response.status().as_u16();
                response.into_body().collect().await?;
                if sent >= measure_from {
                    out.histogram.record(sent.elapsed().as_micros() as u64)?;
                    *out.statuses.entry(status).or_default() += 1;
                }
            }
            Err(_) => {
                out.errors += 1;
                break;
            }
        }
    }
    Ok(out)
}

fn main() -> anyhow::Result<()> {
    let args: &'static Args = Box::leak(Box::new(Args::parse()));
    let uri: &'static hyper::Uri = Box::leak(Box::new(args.url.parse()?));
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(args.threads).enable_all().build()?;
    runtime.block_on(async {
        let start = Instant::now();
        let measure_from = start + Duration::from_secs(args.warmup);
        let end = measure_from + Duration::from_secs(args.seconds);
        let tasks: Vec<_> = (0..args.connections).map(|_| tokio::spawn(connection(args, uri, start, measure_from, end))).collect();
        let mut histogram = Histogram::<u64>::new(3)?;
        let mut statuses: BTreeMap<u16, u64> = BTreeMap::new();
        let mut errors = 0;
        for task in tasks {
            let out = task.await??;
            histogram.add(&out.histogram)?;
            for (status, n) in out.statuses {
                *statuses.entry(status).or_default() += n;
            }
            errors += out.errors;
        }
        let total: u64 = statuses.values().sum();
        let report = serde_json::json!({
            "requests": total,
            "rps": (total as f64 / args.seconds as f64).round(),
            "p50_us": histogram.value_at_quantile(0.50),
            "p99_us": histogram.value_at_quantile(0.99),
            "statuses": statuses,
            "errors": errors,
        });
        println!("{report}");
        Ok(())
    })
}
