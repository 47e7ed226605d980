//! console_meeting_page_ms: the web console's meeting page, from navigation start to
//! interactive (the transcript rendered and a line clickable), with a 60-minute transcript
//! (1000 lines) in a SQLite store, the control API on loopback, Debian's Chromium driven by
//! puppeteer-core (`tests/browser/console.mjs --bench N`). The first load (cold script
//! cache) is not counted.

use std::time::Duration;

use anyhow::{Context, Result};

use super::{percentile, row};
use meeting_agent::config::{ApiKey, Config};
use meeting_agent::store::{Meeting, Segment, Store};

const KEY: &str = "bench-console-key-0123456789abcdef";

pub async fn meeting_page(loads: u32, lines: u32) -> Result<()> {
    anyhow::ensure!(
        meeting_agent::api::console::player_installed(),
        "the console's player is not in this build: run scripts/console_setup.sh and rebuild"
    );
    let dir = std::env::temp_dir().join(format!("bench-console-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let store = Store::connect(&format!("sqlite:{}", dir.join("console.db").display())).await?;
    let minutes = 60i64;
    let span = minutes * 60_000 / i64::from(lines.max(1));
    let meeting = Meeting::new("bench-console", 1_780_000_000_000);
    store
        .open_meeting(
            &meeting,
            &meeting.root_message("meeting-agent", "Meeting".into()),
        )
        .await?;
    let speakers = ["alice", "bob", "carol", "dave"];
    let segments: Vec<Segment> = (0..i64::from(lines))
        .map(|i| Segment {
            key: format!("s{i}"),
            speaker: speakers[i as usize % speakers.len()].into(),
            text: format!(
                "Line {i}: we went through the quarterly budget, the launch plan and who follows up on item {}.",
                i % 17
            ),
            start_ms: i * span,
            end_ms: i * span + span - 200,
        })
        .collect();
    store.add_segments(&meeting, &segments).await?;
    store
        .end_meeting(&meeting.id, meeting.started_at_ms + minutes * 60_000)
        .await?;
    let mut config = Config {
        data_dir: dir.clone(),
        ..Default::default()
    };
    config.api.keys = vec![ApiKey {
        key: KEY.into(),
        rooms: vec!["bench-console".into()],
        participant_attributes: false,
    }];
    let state = meeting_agent::api::ApiState::new(&config, Some(store), None);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { meeting_agent::api::serve_on(listener, state).await });
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/browser/console.mjs");
    let out = dir.join("bench.json");
    let run = tokio::process::Command::new("node")
        .arg(&script)
        .args(["--url", &url, "--key", KEY, "--meeting", &meeting.id])
        .args(["--bench", &loads.to_string()])
        .arg("--out")
        .arg(&out)
        .kill_on_drop(true)
        .status();
    let status = tokio::time::timeout(Duration::from_secs(300), run)
        .await
        .context("the browser did not finish within 300 s")??;
    let result: serde_json::Value = serde_json::from_slice(&std::fs::read(&out)?)?;
    anyhow::ensure!(status.success(), "console.mjs failed: {result}");
    let mut ms: Vec<f64> = result["bench"]
        .as_array()
        .context("no loads")?
        .iter()
        .map(|l| l["ms"].as_f64().unwrap_or(f64::NAN))
        .collect();
    let shown = result["bench"][0]["lines"].as_u64().unwrap_or(0);
    anyhow::ensure!(
        shown == u64::from(lines),
        "{shown} lines shown, not {lines}"
    );
    ms.sort_by(f64::total_cmp);
    eprintln!("meeting page to interactive, {lines} lines: {ms:.1?} ms");
    let _ = std::fs::remove_dir_all(&dir);
    let cmd =
        format!("meeting-agent-dev bench console-meeting-page --loads {loads} --lines {lines}");
    let unit = format!(
        "ms p50 ({} loads, {lines}-line 60-minute transcript, Chromium, loopback; p95 {:.1} ms)",
        ms.len(),
        percentile(&ms, 0.95)
    );
    row(
        "console_meeting_page_ms",
        percentile(&ms, 0.5),
        &unit,
        "<= 500",
        &cmd,
    );
    Ok(())
}
