//! api_token_p99_ms: participant-token minting latency through the control API under a steady
//! 200 requests per second (loopback HTTP, one API key, rate limit raised for the run), each
//! mint asking a local livekit-server whether the meeting is locked.

use std::time::{Duration, Instant};

use anyhow::Result;

use super::row;

pub async fn token_latency(rate: u32, seconds: u64) -> Result<()> {
    let key = "bench-key-0123456789abcdefghij";
    let server = crate::LocalLiveKitServer::start().await?;
    let mut config = meeting_agent::config::Config::default();
    config.livekit.url = server.ws_url();
    config.livekit.api_key = server.api_key.clone();
    config.livekit.api_secret = server.api_secret.clone();
    config.api.keys = vec![meeting_agent::config::ApiKey {
        key: key.into(),
        rooms: vec!["*".into()],
        participant_attributes: false,
    }];
    config.api.token_rate_per_minute = rate * 60 * 2;
    let state = meeting_agent::api::ApiState::new(&config, None, None);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/v1/tokens", listener.local_addr()?);
    tokio::spawn(meeting_agent::api::serve_on(listener, state));
    let client = reqwest::Client::new();
    let total = rate as u64 * seconds;
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(total as usize);
    for n in 0..total {
        let due = start + interval * n as u32;
        tokio::time::sleep_until(due.into()).await;
        let (client, url) = (client.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let res = client
                .post(&url)
                .bearer_auth(key)
                .json(&serde_json::json!({"room": "bench", "identity": format!("user-{n}")}))
                .send()
                .await;
            let ok = matches!(&res, Ok(r) if r.status().is_success());
            (t.elapsed().as_secs_f64() * 1000.0, ok)
        }));
    }
    let mut latencies = Vec::with_capacity(tasks.len());
    let mut failed = 0;
    for t in tasks {
        let (ms, ok) = t.await?;
        if ok {
            latencies.push(ms);
        } else {
            failed += 1;
        }
    }
    anyhow::ensure!(failed == 0, "{failed} token requests failed");
    latencies.sort_by(f64::total_cmp);
    let p = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    let achieved = latencies.len() as f64 / start.elapsed().as_secs_f64();
    eprintln!(
        "{} tokens at {achieved:.0}/s, p50 {:.2} ms",
        latencies.len(),
        p(0.5)
    );
    let command = format!("meeting-agent-dev bench api-token --rate {rate} --seconds {seconds}");
    row("api_token_p99_ms", p(0.99), "ms", "-", &command);
    Ok(())
}
