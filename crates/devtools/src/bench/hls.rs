//! hls_live_latency_s: a flash shown in the meeting (the publisher's capture time) to the
//! same flash on screen in Chromium, where hls.js follows the recording's live playlist
//! through the control API (`live.m3u8?via=api`), both on this machine's clock.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::{percentile, row};
use crate::PythonParticipant;
use meeting_agent::worker::{Shutdown, Worker};

const KEY: &str = "bench-hls-live-key-0123456789abcdef";
const ROOM: &str = "bench-hls";
/// Longer than any latency worth measuring, so each flash on screen pairs with one capture.
const FLASH_PERIOD_S: &str = "20";

/// hls.js as the build embeds it for the console (`console/node_modules`, installed by
/// scripts/setup.sh), or `MEETING_AGENT_HLS_JS`.
fn hls_js() -> Result<PathBuf> {
    let path = std::env::var_os("MEETING_AGENT_HLS_JS")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::repository().join("console/node_modules/hls.js/dist/hls.min.js"));
    anyhow::ensure!(
        path.is_file(),
        "{} is missing: run scripts/setup.sh (or set MEETING_AGENT_HLS_JS)",
        path.display()
    );
    Ok(path)
}

pub async fn live_latency(seconds: u64, sync_count: u32, busy: usize) -> Result<()> {
    let hls_js = hls_js()?;
    let (server, mut config, data) = super::load::recording_agent_setup("hls").await?;
    config.store.enabled = true;
    config.store.url = format!("sqlite:{}", data.join("store.db").display());
    config.api.keys = vec![meeting_agent::config::ApiKey {
        key: KEY.into(),
        rooms: vec![ROOM.into()],
        participant_attributes: false,
    }];
    config.validate()?;
    let services = meeting_agent::services::Services::build(&config).await?;
    let recorder = services
        .recorder
        .clone()
        .context("recording did not start")?;
    let store = services.store.clone().context("no store")?;
    let state = meeting_agent::api::ApiState::new(&config, Some(store.clone()), Some(recorder));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let api = format!("http://{}", listener.local_addr()?);
    tokio::spawn(meeting_agent::api::serve_on(listener, state));
    let worker = Worker::new(config.clone(), Arc::new(services.session()));
    let (shutdown, rx) = tokio::sync::watch::channel(Shutdown::Running);
    let task = tokio::spawn(worker.run(rx));
    let _busy = super::webhooks::Busy::start(busy)?;
    let mut flasher = PythonParticipant::spawn(
        &server,
        ROOM,
        "flasher",
        &[
            "--flash-beep",
            FLASH_PERIOD_S,
            "--video",
            "640x360",
            "--fps",
            "30",
        ],
    )?;
    // The recording is listed while it is written; its live playlist follows.
    let deadline = Instant::now() + Duration::from_secs(60);
    let id = loop {
        if let Some(m) = store.recordings(Some(ROOM)).await?.into_iter().next() {
            break m.id;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "no recording started within a minute"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let http = reqwest::Client::new();
    let playlist = format!("{api}/v1/recordings/{id}/live.m3u8");
    loop {
        let r = http.get(&playlist).bearer_auth(KEY).send().await?;
        if r.status().is_success() && r.text().await?.matches(".m4s").count() >= 3 {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "no live playlist within a minute"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let cpu_before = meeting_agent::captions::threads::read_cpu_times();
    let out = data.join("hls-live.json");
    let browser = tokio::process::Command::new("node")
        .arg(crate::repository().join("tests/browser/hls_live.mjs"))
        .args(["--api", &api, "--key", KEY, "--recording", &id])
        .arg("--hls-js")
        .arg(&hls_js)
        .args(["--seconds", &seconds.to_string()])
        .args(["--live-sync-count", &sync_count.to_string()])
        .arg("--out")
        .arg(&out)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(seconds + 90), browser)
        .await
        .context("the browser did not finish")??;
    let busy_share = match (
        cpu_before,
        meeting_agent::captions::threads::read_cpu_times(),
    ) {
        (Some(a), Some(b)) => b.busy_since(&a),
        _ => f64::NAN,
    };
    eprint!("{}", String::from_utf8_lossy(&output.stderr));
    anyhow::ensure!(output.status.success(), "browser failed: {}", output.status);
    let captured = std::sync::Mutex::new(Vec::new());
    flasher
        .wait_for(Duration::from_millis(100), |e| {
            if e["event"] == "flash" {
                captured.lock().unwrap().extend(e["epoch_ms"].as_f64());
            }
            false
        })
        .await;
    let captured = captured.into_inner().unwrap();
    flasher.stop().await;
    let _ = shutdown.send(Shutdown::Terminate);
    let _ = tokio::time::timeout(Duration::from_secs(30), task).await;
    let record: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out)?)?;
    let shown: Vec<f64> = record["onsets"]
        .as_array()
        .map(|a| a.iter().filter_map(|o| o["epoch_ms"].as_f64()).collect())
        .unwrap_or_default();
    let period_ms: f64 = FLASH_PERIOD_S.parse::<f64>()? * 1000.0;
    let mut latencies: Vec<f64> = shown
        .iter()
        .filter_map(|&s| {
            let c = captured
                .iter()
                .copied()
                .filter(|&c| c <= s)
                .fold(f64::NAN, f64::max);
            (s - c < period_ms).then_some((s - c) / 1000.0)
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    eprintln!(
        "{} flashes captured, {} shown in hls.js {}; latency {latencies:.2?} s; hls.js's own latency estimate {:?}; stalls {}; machine {:.0} % busy",
        captured.len(),
        shown.len(),
        record["hls"],
        record["latency"].as_array().and_then(|a| a.last()),
        record["waiting"],
        busy_share * 100.0
    );
    anyhow::ensure!(latencies.len() >= 2, "too few flashes paired");
    let _ = std::fs::remove_dir_all(&data);
    let load = if busy > 0 {
        format!(", {busy} busy loops beside it")
    } else {
        String::new()
    };
    let cmd = format!(
        "meeting-agent-dev bench hls-live --seconds {seconds} --sync-count {sync_count}{}",
        if busy > 0 {
            format!(" --busy {busy}")
        } else {
            String::new()
        }
    );
    let unit = format!(
        "s (p50 of {} flashes; p95 {:.2} s; hls.js liveSyncDurationCount {sync_count}, 2 s segments; machine {:.0} % busy{load})",
        latencies.len(),
        percentile(&latencies, 0.95),
        busy_share * 100.0
    );
    row(
        "hls_live_latency_s",
        percentile(&latencies, 0.5),
        &unit,
        "<= 8",
        &cmd,
    );
    Ok(())
}
