//! `meeting-agent-dev demo`: the whole product on one machine. A local livekit-server, a
//! participant (LiveKit's Python SDK) that speaks the fixture sentences with its camera on, and
//! the agent with captions, noise suppression, recording and the messaging store. Prints the
//! live captions as the room receives them, then the recording's link, the meeting's chat
//! thread and its summary.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio::sync::watch;

use crate::{LocalLiveKitServer, PythonParticipant};
use meeting_agent::config::Config;
use meeting_agent::worker::{Shutdown, Worker, WorkerEvent};

const ROOM: &str = "demo";

pub async fn run(mut config: Config) -> Result<()> {
    meeting_agent::livekit::Engine::start(&config.engine.library)?;
    let server = LocalLiveKitServer::start()
        .await
        .context("local livekit-server (scripts/setup.sh builds it)")?;
    let data = std::env::temp_dir().join(format!("meeting-agent-demo-{}", std::process::id()));
    std::fs::create_dir_all(&data)?;
    config.livekit.url = server.ws_url();
    config.livekit.api_key = server.api_key.clone();
    config.livekit.api_secret = server.api_secret.clone();
    config.agent.name = String::new();
    config.agent.load_threshold = 1.0;
    config.data_dir = data.clone();
    config.store.enabled = true;
    config.store.url = format!("sqlite:{}", data.join("meeting-agent.db").display());
    config.recording.auto = true;
    config.captions.enabled = true;
    config.recording.dir = data.join("recordings");
    config.validate()?;
    println!(
        "livekit-server on {} (room {ROOM:?}); data in {}",
        server.ws_url(),
        data.display()
    );

    let services = meeting_agent::services::Services::build(&config).await?;
    let store = services.store.clone().context("the store did not start")?;
    let recorder = services
        .recorder
        .clone()
        .context("recording did not start")?;
    anyhow::ensure!(services.captioning.is_some(), "captions did not start");
    let session = services.session();
    let worker = Worker::new(config.clone(), Arc::new(session));
    let mut events = worker.subscribe();
    let (shutdown, shutdown_rx) = watch::channel(Shutdown::Running);
    let worker_task = tokio::spawn(worker.run(shutdown_rx));

    // Registered first: alice's joining creates the room, the agent is dispatched into it,
    // and alice speaks only once the agent is there.
    tokio::time::timeout(Duration::from_secs(60), async {
        while let Ok(e) = events.recv().await {
            if matches!(e, WorkerEvent::Registered { .. }) {
                return;
            }
        }
    })
    .await
    .context("the agent worker did not register with the local server")?;
    let speech = crate::fixtures::dir()?.join("captions.wav");
    let mut alice = PythonParticipant::spawn(
        &server,
        ROOM,
        "alice",
        &[
            "--wav",
            &speech.to_string_lossy(),
            "--once",
            "--video",
            "640x360",
        ],
    )?;
    println!("alice joined and speaks; live captions:");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let event = alice
            .wait_for(Duration::from_secs(5), |e| {
                e["event"] == "wav_finished"
                    || (e["event"] == "text_stream" && e["topic"] == "lk.transcription")
            })
            .await;
        match event {
            Some(e) if e["event"] == "wav_finished" => break,
            Some(e) if crate::participant::is_final_caption(&e) => println!(
                "  [caption] {}: {}",
                e["identity"].as_str().unwrap_or("?"),
                e["text"].as_str().unwrap_or("")
            ),
            Some(_) => {}
            None if Instant::now() > deadline => anyhow::bail!("the demo speech never finished"),
            None => {}
        }
    }
    // The last finals come a moment after the speech (longer on a busy machine): read them
    // until none has come for 8 s, at most 40 s.
    let give_up = Instant::now() + Duration::from_secs(40);
    while Instant::now() < give_up {
        let next = alice
            .wait_for(Duration::from_secs(8), crate::participant::is_final_caption)
            .await;
        let Some(e) = next else { break };
        println!(
            "  [caption] {}: {}",
            e["identity"].as_str().unwrap_or("?"),
            e["text"].as_str().unwrap_or("")
        );
    }
    alice.stop().await;
    println!("meeting over: closing the room");
    if !server.close_room(ROOM).await? {
        println!("the room had closed already");
    }

    // The recording, once stored; the thread, once it has its summary.
    let until = Instant::now() + Duration::from_secs(90);
    let recording = loop {
        if let Some(r) = recorder.storage.list().await?.pop() {
            break r;
        }
        anyhow::ensure!(
            Instant::now() < until,
            "the recording was not stored in time"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let link = recorder
        .storage
        .link(
            &recording,
            Duration::from_secs(config.recording.link_expiry_secs),
        )
        .await?;
    println!(
        "\nrecording: {} ({:.1} s, {} bytes, {} layout)",
        link,
        recording.duration_ms.unwrap_or(0) as f64 / 1000.0,
        recording.size_bytes.unwrap_or(0),
        recording.layout
    );
    let thread = loop {
        if let Some(meeting) = store.meetings(Some(ROOM)).await?.first() {
            let thread = store.thread(&meeting.id).await?;
            if thread.iter().any(|m| m.kind == "summary") {
                break thread;
            }
        }
        anyhow::ensure!(
            Instant::now() < until,
            "the meeting's summary was not written in time"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    println!("\nchat thread ({} messages):", thread.len());
    for m in &thread {
        if m.kind != "summary" {
            println!(
                "  [{}] {}: {}",
                m.kind,
                m.sender_id,
                m.text.replace('\n', "\n      ")
            );
        }
    }
    println!("\nsummary:");
    for m in thread.iter().filter(|m| m.kind == "summary") {
        println!("{}", m.text);
    }
    let _ = shutdown.send(Shutdown::Terminate);
    let _ = tokio::time::timeout(Duration::from_secs(10), worker_task).await;
    Ok(())
}
