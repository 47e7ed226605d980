//! control_action_p95_ms: a meeting control called through the control API until another
//! participant (LiveKit's Python SDK) observes the change: microphones muted one by one
//! (`track_muted`) and the spotlight moved (`room_metadata_changed`), on a local livekit-server.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde_json::json;

use super::row;
use crate::{LocalLiveKitServer, PythonParticipant};

const KEY: &str = "bench-controls-key-0123456789";
const ROOM: &str = "controls-bench";

fn now_s() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

pub async fn action_latency(speakers: usize, moves: usize) -> Result<()> {
    let server = LocalLiveKitServer::start().await?;
    let mut config = meeting_agent::config::Config::default();
    config.livekit.url = server.ws_url();
    config.livekit.api_key = server.api_key.clone();
    config.livekit.api_secret = server.api_secret.clone();
    config.api.keys = vec![meeting_agent::config::ApiKey {
        key: KEY.into(),
        rooms: vec!["*".into()],
        participant_attributes: false,
    }];
    let state = meeting_agent::api::ApiState::new(&config, None, None);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let api = format!("http://{}", listener.local_addr()?);
    tokio::spawn(meeting_agent::api::serve_on(listener, state));
    let client = reqwest::Client::new();

    let quiet = ["--tone-hz", "0", "--video", "none"];
    let mut observer = PythonParticipant::spawn(&server, ROOM, "observer", &quiet)?;
    let mut people = Vec::new();
    for i in 0..speakers {
        let args = ["--tone-hz", "440", "--video", "none"];
        people.push(PythonParticipant::spawn(
            &server,
            ROOM,
            &format!("p{i}"),
            &args,
        )?);
    }
    let seen = Duration::from_secs(30);
    for _ in 0..speakers {
        observer
            .wait_for(seen, |e| e["event"] == "track_subscribed")
            .await
            .context("the observer subscribes to every microphone")?;
    }
    let mut latencies = Vec::new();
    for i in 0..speakers {
        let identity = format!("p{i}");
        let asked = now_s();
        let response = client
            .post(format!(
                "{api}/v1/rooms/{ROOM}/participants/{identity}/mute"
            ))
            .bearer_auth(KEY)
            .send()
            .await?;
        anyhow::ensure!(
            response.status().is_success(),
            "mute: {}",
            response.status()
        );
        let ev = observer
            .wait_for(seen, |e| {
                e["event"] == "track_muted" && e["identity"] == identity.as_str()
            })
            .await
            .context("the observer sees the microphone muted")?;
        latencies.push((ev["t"].as_f64().unwrap_or(asked) - asked) * 1000.0);
    }
    for n in 0..moves {
        let identity = format!("p{}", n % speakers.max(1));
        let asked = now_s();
        let response = client
            .put(format!("{api}/v1/rooms/{ROOM}/spotlight"))
            .bearer_auth(KEY)
            .json(&json!({ "identity": identity }))
            .send()
            .await?;
        anyhow::ensure!(
            response.status().is_success(),
            "spotlight: {}",
            response.status()
        );
        let wanted = format!("\"meeting.spotlight\":\"{identity}\"");
        // The call answers once its write is read back (a moment later): the time is when
        // the observer saw the change.
        let ev = observer
            .wait_for(seen, |e| {
                e["event"] == "room_metadata_changed"
                    && e["metadata"].as_str().is_some_and(|m| m.contains(&wanted))
            })
            .await
            .context("the observer sees the spotlight move")?;
        latencies.push((ev["t"].as_f64().unwrap_or(asked) - asked) * 1000.0);
    }
    for p in people {
        p.stop().await;
    }
    observer.stop().await;
    latencies.sort_by(f64::total_cmp);
    let p = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    eprintln!(
        "{} actions ({speakers} mutes, {moves} spotlight moves): p50 {:.1} ms, max {:.1} ms",
        latencies.len(),
        p(0.5),
        latencies.last().copied().unwrap_or_default()
    );
    let command = format!("meeting-agent-dev bench controls --speakers {speakers} --moves {moves}");
    row("control_action_p95_ms", p(0.95), "ms", "<= 300", &command);
    Ok(())
}
