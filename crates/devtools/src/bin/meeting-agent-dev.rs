//! `meeting-agent-dev`: the demo and the benchmarks (BENCHMARKS.md), which need the dev tooling
//! (a local livekit-server, Python participants, fixtures) and so stay out of the agent's binary.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};
use meeting_agent::config::Config;
use meeting_agent_devtools::bench;

#[derive(Parser)]
#[command(
    name = "meeting-agent-dev",
    version,
    about = "meeting-agent's demo and benchmarks"
)]
struct Cli {
    /// TOML configuration file (environment variables override it).
    #[arg(long, global = true, env = "MEETING_AGENT_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Everything on this machine: a local livekit-server, a participant speaking the fixture
    /// sentences with its camera on, and the agent; prints live captions, then the recording's
    /// link, the meeting's chat thread and its summary.
    Demo,
    /// Measure a BENCHMARKS.md figure against a local livekit-server (needs scripts/setup.sh).
    Bench {
        #[command(subcommand)]
        which: Bench,
    },
}

#[derive(Subcommand)]
enum Bench {
    /// dispatch_p50_ms / dispatch_p95_ms: room created -> agent joined.
    Dispatch {
        #[arg(long, default_value_t = 30)]
        rooms: usize,
    },
    /// room_rss_mb: extra resident memory per joined room.
    RoomMemory {
        #[arg(long, default_value_t = 2)]
        rooms: usize,
        #[arg(long, default_value_t = 4)]
        publishers: usize,
    },
    /// recv_cpu_pct_360p30: CPU to receive one 640x360@30 video and one audio stream.
    RecvCpu {
        #[arg(long, default_value_t = 20)]
        seconds: u64,
    },
    /// denoise_x_realtime / denoise_vs_stock_ratio: throughput against stock nnnoiseless.
    Denoise {
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        #[arg(long, default_value_t = 1)]
        streams: usize,
    },
    /// denoise_snr_gain_db: SNR gain on speech with stationary noise.
    DenoiseSnr,
    /// denoise_snr_gain_db_dfn, denoise_pesq_gain_*: RNNoise and DeepFilterNet3 on the same sets.
    DenoiseModels,
    /// dfn_x_realtime: DeepFilterNet3 per stream on one thread, beside libDF's own library.
    Dfn {
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
    /// caption_wer_noisy_<snr>db_pct_*: captions on noisy speech, raw / RNNoise / DeepFilterNet3.
    CaptionWerNoisy {
        /// `real-speech` (a human speaker) or `wer-set` (twenty sentences).
        #[arg(long, default_value = "real-speech")]
        fixture: String,
        /// white, pink, hum or babble.
        #[arg(long, default_value = "pink")]
        noise: String,
        #[arg(long, default_value_t = 5.0)]
        snr: f64,
        /// whisper model (default: the captions model of the default configuration).
        #[arg(long)]
        model: Option<PathBuf>,
    },
    /// asr_rtf_<name>: whisper's real-time factor and WER on the caption fixture.
    Asr {
        #[arg(long)]
        model: PathBuf,
        /// Figure suffix: tiny, base.
        #[arg(long, default_value = "tiny")]
        name: String,
        #[arg(long, default_value_t = 2)]
        threads: usize,
        /// `wer-set` (twenty sentences), `captions` (six) or `real-speech`.
        #[arg(long, default_value = "wer-set")]
        fixture: String,
        /// `fitted` (the default) or `full` encoder window for each utterance.
        #[arg(long, default_value = "fitted")]
        final_window: String,
        /// Give each utterance the text before it as whisper's prompt.
        #[arg(long)]
        prompt: bool,
    },
    /// caption_final_p50_s, caption_interim_s, caption_wer_ratio: live captions in a room.
    CaptionLatency {
        /// `wer-set` (twenty sentences), `captions` (six) or `real-speech`.
        #[arg(long, default_value = "wer-set")]
        fixture: String,
        /// Also caption and record a second room of four speaking, camera-on participants.
        #[arg(long)]
        load_room: bool,
        /// `captions.threads`: the most threads whisper uses.
        #[arg(long, default_value_t = 2)]
        threads: usize,
    },
    /// caption_browser_final_p50_s / p95_s: captions as livekit-client in Chromium sees them.
    CaptionBrowser {
        /// How long the browser speaks (the fixture loops).
        #[arg(long, default_value_t = 150)]
        seconds: u32,
        #[arg(long, default_value = "real-speech")]
        fixture: String,
    },
    /// console_meeting_page_ms: the web console's meeting page to interactive in Chromium,
    /// with a 60-minute transcript.
    ConsoleMeetingPage {
        /// Loads measured (one more warms the browser's cache first).
        #[arg(long, default_value_t = 10)]
        loads: u32,
        /// Transcript lines over the 60 minutes.
        #[arg(long, default_value_t = 1000)]
        lines: u32,
    },
    /// clean_track_latency_ms: extra delay of `<identity>-clean` over the raw microphone.
    CleanTrackLatency {
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
    },
    /// caption_speakers_realtime: simultaneous speakers captioned without falling behind.
    CaptionSpeakers {
        #[arg(long, default_value_t = 6)]
        max: usize,
        /// Seconds of the fixture each speaker says.
        #[arg(long, default_value_t = 40.0)]
        seconds: f64,
    },
    /// search_p95_ms_1m_*: search latency over many stored segments, SQLite and PostgreSQL.
    Search {
        #[arg(long, default_value_t = 1_000_000)]
        segments: usize,
        #[arg(long, default_value_t = 200)]
        queries: usize,
    },
    /// vb_ms_360p / vb_ms_720p: virtual background cost per frame on one core.
    Vb {
        #[arg(long, default_value_t = 200)]
        frames: usize,
    },
    /// vad_*: RNNoise's voice probability against WebRTC's VAD and Silero, accuracy and cost.
    Vad {
        /// ONNX Runtime library (scripts/setup.sh installs it).
        #[arg(long, default_value_os_t = meeting_agent::config::onnxruntime_library())]
        onnxruntime: PathBuf,
        /// Silero VAD model (models/fetch_models.sh silero-vad).
        #[arg(long, default_value_os_t = meeting_agent::config::cache_dir().join("models").join("silero_vad.onnx"))]
        model: PathBuf,
    },
    /// agent_cores_per_room4_all, rooms_per_2core_agent_only: rooms of four with every feature
    /// on, added one at a time; the agent's own CPU per room and how captions fare.
    Capacity {
        #[arg(long, default_value_t = 3)]
        max_rooms: usize,
        /// Seconds each new room runs before it is measured.
        #[arg(long, default_value_t = 15)]
        warmup: u64,
        /// Seconds measured with each number of rooms.
        #[arg(long, default_value_t = 30)]
        measure: u64,
        /// All four participants talk at once, all the time (else they take turns).
        #[arg(long)]
        all_talk: bool,
    },
    /// failover_s: a worker process SIGKILLed mid-meeting -> captions again from another one
    /// (needs the `meeting-agent` binary built beside this one).
    Failover {
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
    /// load_rooms_full: rooms of 4 participants (captions, denoise, recording) until WS_FULL.
    Load {
        #[arg(long, default_value_t = 4)]
        max_rooms: usize,
        /// Seconds each new room runs before the next is added.
        #[arg(long, default_value_t = 30)]
        settle: u64,
    },
    /// api_token_p99_ms: token minting latency through the control API at a steady rate.
    ApiToken {
        #[arg(long, default_value_t = 200)]
        rate: u32,
        #[arg(long, default_value_t = 20)]
        seconds: u64,
    },
    /// control_action_p95_ms: a meeting control called -> the change seen by another participant.
    Controls {
        /// Participants muted one by one.
        #[arg(long, default_value_t = 8)]
        speakers: usize,
        /// Spotlight moves.
        #[arg(long, default_value_t = 32)]
        moves: usize,
    },
    /// breakout_move_all_s: everyone moved into breakout rooms through the control API.
    Breakouts {
        #[arg(long, default_value_t = 8)]
        participants: usize,
        #[arg(long, default_value_t = 2)]
        rooms: usize,
        /// The agent captions, and one participant in each breakout speaks there.
        #[arg(long)]
        speech: bool,
    },
    /// voice_msg_ready_p50_s, voice_msg_throughput_x_realtime: voice messages through the queue.
    VoiceMessages {
        #[arg(long, default_value_t = 10)]
        count: usize,
        #[arg(long, default_value_t = 1)]
        workers: usize,
    },
    /// webhook_delivery_p95_ms, webhook_outbox_recovery_s: webhooks through the outbox to a
    /// local receiver that verifies them, and its backlog after an outage.
    Webhooks {
        #[arg(long, default_value_t = 200)]
        events: usize,
        /// Seconds the receiver is away.
        #[arg(long, default_value_t = 60)]
        outage: u64,
        /// The outbox in PostgreSQL (a throwaway cluster) instead of SQLite.
        #[arg(long)]
        postgres: bool,
        /// Busy loops holding this many cores meanwhile (the loaded rows).
        #[arg(long, default_value_t = 0)]
        busy: usize,
    },
    /// hls_live_latency_s: a flash in the meeting to the same flash on screen in Chromium,
    /// hls.js following the recording's live playlist.
    HlsLive {
        #[arg(long, default_value_t = 90)]
        seconds: u64,
        /// hls.js `liveSyncDurationCount`: segments behind the live edge it plays.
        #[arg(long, default_value_t = 2)]
        sync_count: u32,
        /// Busy loops holding this many cores meanwhile (the loaded row).
        #[arg(long, default_value_t = 0)]
        busy: usize,
    },
    /// rec_cores_720p_grid4: CPU to record four cameras into a 720p grid live, vs gst-launch-1.0.
    RecCores {
        #[arg(long, default_value_t = 20)]
        seconds: u64,
    },
    /// rec_cores_per_participant_audio: CPU per live per-participant audio recording (AAC in
    /// fragmented MP4), `--count` of them at once.
    RecParticipantCores {
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        #[arg(long, default_value_t = 8)]
        count: usize,
    },
    /// rec_link_after_end_s: end of a recording streamed to S3 (s3s-fs) -> playable link.
    RecLink {
        #[arg(long, default_value_t = 1)]
        minutes: u64,
    },
    /// rec_av_offset_ms, rec_av_drift_ms_per_min: a live flash-and-beep participant recorded
    /// through livekit-server; with --load-room, while a second room keeps the machine busy.
    RecSync {
        #[arg(long, default_value_t = 120)]
        seconds: u64,
        #[arg(long)]
        load_room: bool,
    },
    /// vb_latency_ms: camera frame arrival -> processed frame to `<identity>-vb`, live through
    /// livekit-server; with --load-room, while a second room keeps the machine busy.
    VbLatency {
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        #[arg(long)]
        load_room: bool,
    },
    /// summary_after_end_s: a meeting's room closed -> its summary in the messaging store.
    SummaryAfterEnd {
        #[arg(long, default_value_t = 3)]
        meetings: usize,
    },
    /// rec_drift_ms: A/V offset at the end of a long file-fed flash-and-beep recording.
    RecDrift {
        #[arg(long, default_value_t = 30)]
        minutes: u64,
    },
    /// Memory and FFI handles over a long run with several streams.
    Soak {
        #[arg(long, default_value_t = 10)]
        minutes: u64,
        #[arg(long, default_value_t = 4)]
        streams: usize,
    },
}

fn main() -> std::process::ExitCode {
    // As the agent does: everything written is readable by this user only.
    // SAFETY: umask only sets the process's file mode mask; it cannot fail.
    unsafe { libc::umask(0o077) };
    let cli = Cli::parse();
    meeting_agent::telemetry::init_logging(
        meeting_agent::config::LogFormat::Text,
        &std::env::var("MEETING_AGENT_LOG").unwrap_or_else(|_| "warn".into()),
    );
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| runtime.block_on(run(cli)));
    if let Err(e) = &result {
        eprintln!("meeting-agent-dev: error: {e:#}");
    }
    meeting_agent::services::exit(result.is_ok())
}

async fn run(cli: Cli) -> Result<()> {
    let which = match cli.command {
        Command::Demo => {
            let config = Config::load_unvalidated(cli.config.as_deref())?;
            return meeting_agent_devtools::demo::run(config).await;
        }
        Command::Bench { which } => which,
    };
    match which {
        Bench::Dispatch { rooms } => bench::dispatch(rooms).await,
        Bench::RoomMemory { rooms, publishers } => bench::room_memory(rooms, publishers).await,
        Bench::RecvCpu { seconds } => bench::recv_cpu(seconds).await,
        Bench::Soak { minutes, streams } => bench::soak(minutes, streams).await,
        Bench::RecCores { seconds } => {
            tokio::task::spawn_blocking(move || bench::recording::cores(seconds)).await?
        }
        Bench::RecParticipantCores { seconds, count } => {
            tokio::task::spawn_blocking(move || {
                bench::recording::participant_audio_cores(seconds, count)
            })
            .await?
        }
        Bench::Load { max_rooms, settle } => bench::load::rooms_full(max_rooms, settle).await,
        Bench::Capacity {
            max_rooms,
            warmup,
            measure,
            all_talk,
        } => bench::capacity::capacity(max_rooms, warmup, measure, all_talk).await,
        Bench::Failover { rounds } => bench::failover::failover(rounds).await,
        Bench::ApiToken { rate, seconds } => bench::api::token_latency(rate, seconds).await,
        Bench::Breakouts {
            participants,
            rooms,
            speech,
        } => bench::controls::breakout_move_all(participants, rooms, speech).await,
        Bench::Controls { speakers, moves } => {
            bench::controls::action_latency(speakers, moves).await
        }
        Bench::VoiceMessages { count, workers } => {
            bench::media::voice_messages(count, workers).await
        }
        Bench::Webhooks {
            events,
            outage,
            postgres,
            busy,
        } => bench::webhooks::delivery(events, outage, postgres, busy).await,
        Bench::HlsLive {
            seconds,
            sync_count,
            busy,
        } => bench::hls::live_latency(seconds, sync_count, busy).await,
        Bench::RecLink { minutes } => bench::recording::link_after_end(minutes).await,
        Bench::RecSync { seconds, load_room } => {
            bench::recording::live_sync(seconds, load_room).await
        }
        Bench::RecDrift { minutes } => {
            tokio::task::spawn_blocking(move || bench::recording::drift(minutes)).await?
        }
        Bench::Denoise { rounds, streams } => bench::denoise::throughput(rounds, streams),
        Bench::DenoiseSnr => bench::denoise::snr_gain(),
        Bench::DenoiseModels => bench::deepfilter::quality(),
        Bench::Dfn { rounds } => bench::deepfilter::throughput(rounds),
        Bench::CaptionWerNoisy {
            fixture,
            noise,
            snr,
            model,
        } => {
            let model =
                model.unwrap_or_else(|| meeting_agent::config::Config::default().captions.model);
            bench::deepfilter::caption_wer(&model, &fixture, &noise, snr).await
        }
        Bench::CaptionLatency {
            fixture,
            load_room,
            threads,
        } => bench::captions::caption_latency(&fixture, load_room, threads).await,
        Bench::CaptionBrowser { seconds, fixture } => {
            bench::browser::caption_browser(seconds, &fixture).await
        }
        Bench::ConsoleMeetingPage { loads, lines } => {
            bench::console::meeting_page(loads, lines).await
        }
        Bench::CaptionSpeakers { max, seconds } => {
            bench::speakers::speakers_realtime(max, seconds).await
        }
        Bench::Search { segments, queries } => bench::search::search(segments, queries).await,
        Bench::Vb { frames } => bench::vb::vb(frames),
        Bench::SummaryAfterEnd { meetings } => bench::summary::summary_after_end(meetings).await,
        Bench::VbLatency { seconds, load_room } => bench::vb::vb_latency(seconds, load_room).await,
        Bench::Vad { onnxruntime, model } => bench::vad::compare(&onnxruntime, &model),
        Bench::Asr {
            model,
            name,
            threads,
            fixture,
            final_window,
            prompt,
        } => {
            let final_window = match final_window.as_str() {
                "full" => meeting_agent::config::FinalWindow::Full,
                "fitted" => meeting_agent::config::FinalWindow::Fitted,
                other => anyhow::bail!("--final-window must be full or fitted, got {other:?}"),
            };
            let options = bench::asr::AsrOptions {
                threads,
                final_window,
                prompt,
            };
            bench::asr::asr(&model, &name, &fixture, options).await
        }
        Bench::CleanTrackLatency { seconds } => bench::denoise::clean_track_latency(seconds).await,
    }
}
