//! The demo, as `scripts/run.sh` runs it without a server: the `meeting-agent-dev` binary.

use std::process::Command;

fn dev() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_meeting-agent-dev"));
    for var in [
        "LIVEKIT_URL",
        "LIVEKIT_API_KEY",
        "LIVEKIT_API_SECRET",
        "MEETING_AGENT_CONFIG",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// The README's main command: the demo runs to the end and shows captions, the recording's
/// link, the chat thread and the summary.
#[test]
fn the_demo_runs_to_the_end() {
    let out = dev().arg("demo").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo exit status {}; stderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    // What the room heard, as captions: most of the six sentences, close to the script (the
    // machine is busy with other tests, so a word or a late final may differ).
    let heard: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.trim().strip_prefix("[caption] alice:"))
        .collect();
    assert!(heard.len() >= 4, "{stdout}");
    let script = std::fs::read_to_string(
        meeting_agent_devtools::fixtures::dir()
            .unwrap()
            .join("captions.txt"),
    )
    .unwrap();
    let wer = meeting_agent::captions::wer::word_error_rate(&script, &heard.join(" "));
    assert!(wer <= 0.4, "WER {wer:.2}: {stdout}");
    assert!(stdout.contains("recording: file://"), "{stdout}");
    assert!(
        stdout.contains("[recording] meeting-agent: Recording"),
        "{stdout}"
    );
    assert!(
        stdout.contains("summary:") && stdout.contains("Speaking time"),
        "{stdout}"
    );
}
