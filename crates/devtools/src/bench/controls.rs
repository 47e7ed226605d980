//! The meeting controls' figures, through the control API on a local livekit-server:
//! control_action_p95_ms, a control called until another participant (LiveKit's Python SDK)
//! observes the change (microphones muted one by one, seen as `track_muted`; the spotlight
//! moved, seen as `room_metadata_changed`); breakout_move_all_s, a meeting spread over breakout
//! rooms until everyone is in theirs.

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

/// The configuration for `server` with the bench's operator key, and the control API on a free
/// loopback port (its URL).
async fn control_api(
    server: &LocalLiveKitServer,
    token_rate_per_minute: u32,
) -> Result<(meeting_agent::config::Config, String)> {
    let mut config = meeting_agent::config::Config::default();
    config.livekit.url = server.ws_url();
    config.livekit.api_key = server.api_key.clone();
    config.livekit.api_secret = server.api_secret.clone();
    config.api.keys = vec![meeting_agent::config::ApiKey {
        key: KEY.into(),
        rooms: vec!["*".into()],
        participant_attributes: false,
    }];
    config.api.token_rate_per_minute = token_rate_per_minute;
    let state = meeting_agent::api::ApiState::new(&config, None, None);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let api = format!("http://{}", listener.local_addr()?);
    tokio::spawn(meeting_agent::api::serve_on(listener, state));
    Ok((config, api))
}

pub async fn action_latency(speakers: usize, moves: usize) -> Result<()> {
    let server = LocalLiveKitServer::start().await?;
    let default_rate = meeting_agent::config::Config::default()
        .api
        .token_rate_per_minute;
    let (_, api) = control_api(&server, default_rate).await?;
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

/// breakout_move_all_s: `POST /v1/rooms/{room}/breakouts` with `participants` people (clients
/// that follow a move) -> every one of them connected in its breakout, with the agent dispatched
/// into each breakout. With `speech`, the agent captions (the configured model) and one
/// participant per breakout starts speaking there as it arrives: breakout_first_caption_s is the
/// call to the first caption (interim or final) its client receives, in every breakout.
/// Times are the clients' own event times (one clock: the same machine).
pub async fn breakout_move_all(participants: usize, rooms: usize, speech: bool) -> Result<()> {
    meeting_agent::livekit::Engine::start(&meeting_agent::paths::engine_library())?;
    let server = LocalLiveKitServer::start().await?;
    let (mut config, api) = control_api(&server, 1000).await?;
    config.agent.load_threshold = 1.0;
    let mut features = meeting_agent::features::FeatureSet::new(config.audio);
    if speech {
        let captioning = meeting_agent::features::captions::Captioning::from_config(&config)?
            .context("captions are enabled by default")?;
        features = features.with_captioning(Some(captioning));
    }
    let worker =
        meeting_agent::worker::Worker::new(config, std::sync::Arc::new(features.session()));
    let (_shutdown, shutdown_rx) =
        tokio::sync::watch::channel(meeting_agent::worker::Shutdown::Running);
    tokio::spawn(worker.run(shutdown_rx));
    let client = reqwest::Client::new();
    let mint = |identity: String| {
        let (client, api) = (client.clone(), api.clone());
        async move {
            let body: serde_json::Value = client
                .post(format!("{api}/v1/tokens"))
                .bearer_auth(KEY)
                .json(&json!({"room": ROOM, "identity": identity}))
                .send()
                .await?
                .json()
                .await?;
            body["token"]
                .as_str()
                .map(str::to_string)
                .context("a token")
        }
    };
    let wav = crate::fixtures::dir()?.join("speech.wav");
    let wav = wav.to_str().context("a UTF-8 fixtures path")?;
    let seen = Duration::from_secs(30);
    let mut people = Vec::new();
    // With speech, p0..p{rooms-1} speak, one in each breakout.
    let speaks = |i: usize| speech && i < rooms;
    let mut assignments = serde_json::Map::new();
    for i in 0..participants {
        let identity = format!("p{i}");
        let token = mint(identity.clone()).await?;
        let mut args = vec!["--token", token.as_str()];
        if speaks(i) {
            // People talk as they arrive, whether the agent is there yet or not.
            args.extend(["--wav", wav, "--speak-at-once"]);
            assignments.insert(identity.clone(), json!(i + 1));
        } else if speech {
            // Listeners: a tone would pass the voice detector and cost whisper time.
            args.push("--quiet");
        }
        let mut p =
            PythonParticipant::spawn_script(&server, "breakout_client.py", &identity, &args)?;
        p.wait_for(seen, |e| e["event"] == "connected")
            .await
            .context("a participant joins the meeting")?;
        people.push(p);
    }
    let started = now_s();
    let opened: serde_json::Value = client
        .post(format!("{api}/v1/rooms/{ROOM}/breakouts"))
        .bearer_auth(KEY)
        .json(&json!({ "count": rooms, "assignments": assignments }))
        .send()
        .await?
        .json()
        .await?;
    anyhow::ensure!(
        opened["rooms"].as_array().is_some_and(|r| r.len() == rooms),
        "{opened}"
    );
    let answered = now_s() - started;
    let at = |e: &serde_json::Value| e["t"].as_f64().unwrap_or(f64::NAN) - started;
    let (mut all_moved, mut with_agent, mut first_caption) = (0.0f64, 0.0f64, 0.0f64);
    for (i, p) in people.iter_mut().enumerate() {
        let joined = p
            .wait_for(seen, |e| {
                e["event"] == "connected"
                    && e["room"]
                        .as_str()
                        .is_some_and(|r| r.contains("--breakout-"))
            })
            .await
            .context("every participant reaches its breakout")?;
        all_moved = all_moved.max(at(&joined));
        let agent = p
            .wait_for(seen, |e| {
                e["event"] == "participant_connected" && e["kind"] == "agent"
            })
            .await
            .context("the agent is dispatched into every breakout")?;
        with_agent = with_agent.max(at(&agent));
        if speaks(i) {
            let caption = p
                .wait_for(seen, |e| {
                    e["event"] == "text_stream" && e["topic"] == "lk.transcription"
                })
                .await
                .context("a caption in every breakout")?;
            first_caption = first_caption.max(at(&caption));
        }
    }
    for p in people {
        p.stop().await;
    }
    eprintln!(
        "{participants} participants into {rooms} breakouts: call answered {answered:.2} s, all in their breakout {all_moved:.2} s, the agent seen in every breakout {with_agent:.2} s{}",
        if speech {
            format!(", a first caption in every breakout {first_caption:.2} s")
        } else {
            String::new()
        }
    );
    let command = format!(
        "meeting-agent-dev bench breakouts --participants {participants} --rooms {rooms}{}",
        if speech { " --speech" } else { "" }
    );
    row("breakout_move_all_s", all_moved, "s", "<= 3", &command);
    if speech {
        row(
            "breakout_first_caption_s",
            first_caption,
            "s",
            "-",
            &command,
        );
    }
    Ok(())
}
