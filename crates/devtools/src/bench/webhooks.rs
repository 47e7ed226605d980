//! webhook_delivery_p95_ms and webhook_outbox_recovery_s: events written to the outbox and
//! delivered by one dispatcher to a local receiver that verifies every signature
//! (`tests/participants/webhook_receiver.py`, the Standard Webhooks reference library).
//! Latency is from just before the event is written to the receiver's arrival time (both the
//! system clock). Recovery: the receiver is stopped for `outage` seconds while events keep
//! coming, then started again; the figure is from its start to the last of the backlog.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use meeting_agent::config::WebhooksConfig;
use meeting_agent::integrations::dispatcher::Dispatcher;
use meeting_agent::integrations::signing::Secret;
use meeting_agent::integrations::{Event, Events};
use meeting_agent::store::Store;
use meeting_agent::store::outbox::EndpointSettings;
use serde_json::{Value, json};

use super::{percentile, row};
use crate::PythonParticipant;

const ROOMS: u32 = 10;

fn now_ms() -> i64 {
    meeting_agent::captions::journal::unix_ms() as i64
}

async fn receiver(port: u16, secret: &str) -> Result<PythonParticipant> {
    let port = port.to_string();
    let mut r = PythonParticipant::spawn_helper(
        "webhook_receiver.py",
        "receiver",
        &["--port", &port, "--secret", secret],
    )?;
    r.wait_for(Duration::from_secs(20), |e| e["event"] == "listening")
        .await
        .context("the receiver did not start")?;
    Ok(r)
}

/// Arrivals until `count` (or `timeout`): each verified delivery's event.
async fn arrivals(
    r: &mut PythonParticipant,
    count: usize,
    timeout: Duration,
) -> Result<Vec<Value>> {
    let until = Instant::now() + timeout;
    let mut got = Vec::new();
    while got.len() < count && Instant::now() < until {
        if let Some(e) = r
            .wait_for(Duration::from_millis(200), |e| e["event"] != "listening")
            .await
        {
            if e["event"] != "received" {
                bail!("the receiver refused a delivery: {e}");
            }
            got.push(e);
        }
    }
    if got.len() < count {
        bail!("only {} of {count} deliveries arrived", got.len());
    }
    Ok(got)
}

/// Busy loops holding `n` cores (the "loaded" rows), ended on drop.
pub(crate) struct Busy(Vec<std::process::Child>);

impl Busy {
    pub(crate) fn start(n: usize) -> Result<Self> {
        let children = (0..n)
            .map(|_| {
                std::process::Command::new("sh")
                    .args(["-c", "while :; do :; done"])
                    .spawn()
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(Self(children))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub async fn delivery(
    events_count: usize,
    outage_secs: u64,
    postgres: bool,
    busy: usize,
) -> Result<()> {
    let _busy = Busy::start(busy)?;
    let dir = std::env::temp_dir().join(format!("ma-bench-webhooks-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let _pg;
    let store = if postgres {
        let pg = crate::LocalPostgres::start()?;
        let store = Store::connect(&pg.url()).await?;
        _pg = Some(pg);
        store
    } else {
        _pg = None;
        Store::connect(&format!("sqlite:{}", dir.join("bench.db").display())).await?
    };
    let config = WebhooksConfig {
        allow_http: true,
        allow_private_addresses: true,
        ..Default::default()
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let secret = Secret::generate()?.expose();
    let settings = EndpointSettings {
        url: format!("http://127.0.0.1:{port}/hook"),
        description: "bench".into(),
        event_types: vec![],
        rooms: vec![],
        enabled: true,
    };
    store
        .add_webhook_endpoint("ep_bench", &settings, &secret, now_ms())
        .await?;
    let events = Events::new(store.clone(), &config);
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    let dispatcher = Dispatcher::new(store.clone(), config.clone(), None);
    tokio::spawn(async move { dispatcher.run(stopped).await });
    let mut n = 0u32;
    let mut emit = |events: Events| {
        n += 1;
        let room = format!("room-{}", n % ROOMS);
        let event = Event::new(
            "participant.joined",
            Some(&room),
            &format!("{room}/{n}"),
            now_ms(),
            json!({"room": room, "n": n, "sent_ms": now_ms()}),
        );
        async move { events.emit(&event, now_ms()).await }
    };

    // Latency: one event every 20 ms.
    let mut r = receiver(port, &secret).await?;
    let collector = tokio::spawn(async move {
        let got = arrivals(&mut r, events_count, Duration::from_secs(120)).await;
        (r, got)
    });
    for _ in 0..events_count {
        emit(events.clone()).await?;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (r, got) = collector.await?;
    let mut latencies: Vec<f64> = got?
        .iter()
        .map(|e| {
            e["t"].as_f64().unwrap_or(0.0) * 1000.0 - e["data"]["sent_ms"].as_f64().unwrap_or(0.0)
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    let (p50, p95, p99) = (
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.95),
        percentile(&latencies, 0.99),
    );
    let store_name = if postgres { "PostgreSQL" } else { "SQLite" };
    let load = if busy > 0 {
        format!(", {busy} busy loops beside it")
    } else {
        String::new()
    };
    eprintln!(
        "delivery latency over {events_count} events: p50 {p50:.1} ms, p95 {p95:.1} ms, p99 {p99:.1} ms ({store_name}{load})"
    );
    let command = format!(
        "meeting-agent-dev bench webhooks --events {events_count} --outage {outage_secs}{}{}",
        if postgres { " --postgres" } else { "" },
        if busy > 0 {
            format!(" --busy {busy}")
        } else {
            String::new()
        }
    );
    row(
        "webhook_delivery_p95_ms",
        p95,
        &format!(
            "ms, event written -> verified at a local receiver (p50 {p50:.1}, p99 {p99:.1}; {events_count} events in {ROOMS} rooms, one every 20 ms; {store_name}{load})"
        ),
        "<= 200",
        &command,
    );

    // Recovery: the receiver away for the outage, ten events a second meanwhile.
    r.stop().await;
    let outage_started = Instant::now();
    let mut backlog = 0;
    while outage_started.elapsed() < Duration::from_secs(outage_secs) {
        emit(events.clone()).await?;
        backlog += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let endpoint = store
        .webhook_endpoint("ep_bench")
        .await?
        .context("endpoint")?;
    let mut r = receiver(port, &secret).await?;
    let back = Instant::now();
    let got = arrivals(&mut r, backlog, Duration::from_secs(300)).await?;
    let recovery = back.elapsed().as_secs_f64();
    // In order per room, every one once.
    let mut last: std::collections::HashMap<String, i64> = Default::default();
    for e in &got {
        let n = e["data"]["n"].as_i64().unwrap_or(0);
        if let Some(prev) = last.insert(e["room"].as_str().unwrap_or("").to_string(), n)
            && n <= prev
        {
            bail!("out of order: {n} after {prev}");
        }
    }
    eprintln!(
        "backlog of {backlog} after a {outage_secs} s outage ({} failed attempts, backoff {} ms at most) delivered {recovery:.2} s after the receiver came back",
        endpoint.failures, config.retry_max_ms
    );
    row(
        "webhook_outbox_recovery_s",
        recovery,
        &format!(
            "s, receiver back after a {outage_secs} s outage -> backlog of {backlog} delivered, in order per room ({store_name}{load})"
        ),
        "<= 10",
        &command,
    );
    r.stop().await;
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}
