//! failover_s: a worker process serving a meeting is SIGKILLed; the time until captions reach
//! the speaker again from another worker's agent. Two `meeting-agent worker` processes (the
//! binary beside this one: build it in the same profile) share a PostgreSQL store and S3; each
//! round kills the one serving the room and starts a replacement, so one is always free.
//! Also: kill -> re-dispatched (the survivor's sweep saw the room orphaned) and kill -> the new
//! agent in the room.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::row;
use crate::PythonParticipant;
use crate::fleet::{FleetConfig, FleetWorker, SharedServices, caption_session};

const T: Duration = Duration::from_secs(90);

struct Round {
    dispatched_s: f64,
    joined_s: f64,
    captions_s: f64,
}

async fn next_session(p: &mut PythonParticipant, within: Duration) -> Option<String> {
    p.wait_for(within, |e| caption_session(e).is_some())
        .await
        .and_then(|e| caption_session(&e))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub async fn failover(rounds: usize) -> Result<()> {
    let shared = SharedServices::start("bench-failover").await?;
    let (server, dir) = (&shared.server, shared.dir.clone());
    let fleet = shared.fleet(1, 60);
    let mut started = 0;
    let mut spawn = |fleet: &FleetConfig<'_>| {
        started += 1;
        FleetWorker::spawn(
            &format!("w{started}"),
            fleet,
            &dir.join(format!("w{started}")),
        )
    };
    let mut workers = vec![spawn(&fleet)?, spawn(&fleet)?];
    for w in &workers {
        if !w.wait_log("worker registered", T).await {
            bail!("{} did not register:\n{}", w.name, w.tail(20));
        }
    }
    let speech = crate::fixtures::dir()?.join("speech.wav");
    let mut results = Vec::new();
    for round in 0..rounds {
        let room = format!("failover-{round}");
        let mut speaker = PythonParticipant::spawn(
            server,
            &room,
            "speaker",
            &[
                "--wav",
                speech.to_str().unwrap_or_default(),
                "--video",
                "none",
            ],
        )?;
        let first = next_session(&mut speaker, T)
            .await
            .context("captions before the crash")?;
        let serving = workers
            .iter()
            .position(|w| w.rooms_accepted().contains(&room))
            .context("no worker says it took the room")?;
        // A few seconds into the meeting, mid-utterance or not: wherever the crash falls.
        tokio::time::sleep(Duration::from_millis(3000 + 1700 * round as u64)).await;
        let mut victim = workers.remove(serving);
        victim.kill();
        let crashed = Instant::now();
        let _ = victim.wait_exit(T).await;
        let captions_s = loop {
            let session = next_session(&mut speaker, T.saturating_sub(crashed.elapsed()))
                .await
                .with_context(|| {
                    format!(
                        "captions after the crash:\n{}",
                        workers.iter().map(|w| w.tail(20)).collect::<String>()
                    )
                })?;
            if session != first {
                break crashed.elapsed().as_secs_f64();
            }
        };
        let since = |needle: &str| {
            workers
                .iter()
                .filter_map(|w| w.first_after(needle, crashed))
                .min()
                .map(|at| (at - crashed).as_secs_f64())
                .unwrap_or(f64::NAN)
        };
        let r = Round {
            dispatched_s: since("dispatched another"),
            joined_s: since(&format!("joined room room={room}")),
            captions_s,
        };
        eprintln!(
            "round {round}: re-dispatched {:.2} s, agent in the room {:.2} s, captions again {:.2} s after the kill",
            r.dispatched_s, r.joined_s, r.captions_s
        );
        results.push(r);
        speaker.stop().await;
        let _ = server.close_room(&room).await;
        // The replacement: one worker stays free for the next round.
        let fresh = spawn(&fleet)?;
        if !fresh.wait_log("worker registered", T).await {
            bail!("{} did not register", fresh.name);
        }
        workers.push(fresh);
    }
    let command = format!(
        "cargo build -p meeting-agent --bin meeting-agent && meeting-agent-dev bench failover --rounds {rounds}"
    );
    row(
        "failover_s",
        median(results.iter().map(|r| r.captions_s).collect()),
        &format!(
            "s, worker SIGKILLed -> captions again from another worker (median of {rounds}; max {:.2})",
            results.iter().map(|r| r.captions_s).fold(0.0, f64::max)
        ),
        "<= 5",
        &command,
    );
    row(
        "failover_redispatch_s",
        median(results.iter().map(|r| r.dispatched_s).collect()),
        "s, kill -> the room re-dispatched by a surviving worker (median)",
        "-",
        &command,
    );
    row(
        "failover_agent_joined_s",
        median(results.iter().map(|r| r.joined_s).collect()),
        "s, kill -> the new agent in the room (median)",
        "-",
        &command,
    );
    drop(workers);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
