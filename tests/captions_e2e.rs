// Own binary (not e2e): whisper tests run alone (SERIAL), one hogs every core on purpose.
//! Live captions end to end: a participant (LiveKit's Python SDK) speaks known sentences
//! (espeak-ng), the agent captions them with whisper, and a second participant receives the
//! `lk.transcription` text streams and legacy transcriptions.

#[path = "e2e/common.rs"]
mod common;
#[path = "e2e/control_api.rs"]
mod control_api;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use meeting_agent::audio::wav::write_i16;
use meeting_agent::captions::journal::Journal;
use meeting_agent::captions::wer::word_error_rate;
use meeting_agent::config::Config;
use meeting_agent::features::FeatureSet;
use meeting_agent::features::captions::Captioning;
use meeting_agent_devtools::participant::is_final_caption;
use meeting_agent_devtools::{LocalLiveKitServer, PythonParticipant};

/// One captioning test at a time: each runs whisper on two threads, and two at once on a 2-core
/// machine would starve the real-time media the test depends on.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn fixtures() -> std::path::PathBuf {
    meeting_agent_devtools::fixtures::dir().unwrap()
}

/// A worker whose sessions caption with the configured (default: tiny.en) model.
async fn captioning_worker(
    server: &LocalLiveKitServer,
    data_dir: &std::path::Path,
) -> RunningWorker {
    storing_worker(server, data_dir, None).await
}

/// The same, also writing every meeting into `store`.
async fn storing_worker(
    server: &LocalLiveKitServer,
    data_dir: &std::path::Path,
    store: Option<meeting_agent::store::Store>,
) -> RunningWorker {
    let mut config: Config = config_for(server, "");
    config.data_dir = data_dir.to_path_buf();
    // Three or four interim hypotheses per 3 s sentence, so LocalAgreement has pairs to agree on.
    config.captions.interim_ms = 700;

    let captioning =
        Captioning::from_config(&config).expect("whisper model (run models/fetch_models.sh)");
    let mut features = FeatureSet::new(config.audio).with_captioning(captioning);
    if let Some(store) = store {
        features = features.with_store(
            store,
            meeting_agent::features::meeting_log::MeetingLogOptions {
                bot_user: "meeting-agent".into(),
                flush_timeout: Duration::from_secs(30),
                llm: None,
                events: None,
                email: Default::default(),
            },
        );
    }
    let session = features.session();
    let reports = session.subscribe();
    start_worker_with(config, Arc::new(session), reports).await
}

/// `who` joins `room` and speaks the WAV at `wav` once (microphone only), then keeps a silent
/// microphone open.
fn speak_once(
    server: &LocalLiveKitServer,
    room: &str,
    who: &str,
    wav: &std::path::Path,
) -> PythonParticipant {
    PythonParticipant::spawn(
        server,
        room,
        who,
        &["--wav", wav.to_str().unwrap(), "--once", "--video", "none"],
    )
    .unwrap()
}

/// The final `lk.transcription` captions `listener` receives, until it has `want` of them or
/// `within` has passed.
async fn final_captions(
    listener: &mut PythonParticipant,
    want: usize,
    within: Duration,
) -> Vec<serde_json::Value> {
    let mut finals = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    while finals.len() < want && tokio::time::Instant::now() < deadline {
        if let Some(ev) = listener
            .wait_for(Duration::from_secs(2), is_final_caption)
            .await
        {
            finals.push(ev);
        }
    }
    finals
}

/// Creates `room` with `metadata` and a silent participant, "lee", who reads the captions.
async fn room_with_listener(
    server: &LocalLiveKitServer,
    room: &str,
    metadata: &str,
) -> PythonParticipant {
    server
        .room_service(
            "CreateRoom",
            &serde_json::json!({"name": room, "metadata": metadata}),
        )
        .await
        .unwrap();
    let mut listener =
        PythonParticipant::spawn(server, room, "lee", &["--tone-hz", "0", "--video", "none"])
            .unwrap();
    listener
        .wait_for(Duration::from_secs(30), |e| e["event"] == "connected")
        .await
        .unwrap();
    listener
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoken_sentences_arrive_as_captions_attributed_to_the_speaker() {
    let _serial = SERIAL.lock().await;
    init();
    let server = LocalLiveKitServer::start().await.unwrap();
    let data_dir = std::env::temp_dir().join(format!("captions-e2e-{}", std::process::id()));
    let _worker = captioning_worker(&server, &data_dir).await;
    let dir = fixtures();
    let expected = std::fs::read_to_string(dir.join("captions.txt")).unwrap();

    let mut listener = PythonParticipant::spawn(
        &server,
        "caption-room",
        "lee",
        &["--tone-hz", "0", "--video", "none"],
    )
    .unwrap();
    listener
        .wait_for(Duration::from_secs(30), |e| e["event"] == "connected")
        .await
        .unwrap();
    let wav = dir.join("captions.wav");
    let mut sam = speak_once(&server, "caption-room", "sam", &wav);
    let published = sam
        .wait_for(Duration::from_secs(30), |e| e["event"] == "published")
        .await
        .unwrap();
    let sam_track = published["sid"].as_str().unwrap().to_string();

    // Collect until the clip has played and the last final has had time to arrive.
    let (mut finals, mut interims, mut legacy) = (Vec::new(), 0, 0);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while finals.len() < 6 && tokio::time::Instant::now() < deadline {
        let Some(ev) = listener
            .wait_for(Duration::from_secs(5), |e| {
                e["event"] == "text_stream" || e["event"] == "transcription"
            })
            .await
        else {
            continue;
        };
        if ev["event"] == "transcription" {
            assert_eq!(ev["identity"], "sam");
            legacy += 1;
            continue;
        }
        assert_eq!(ev["topic"], "lk.transcription");
        assert_eq!(
            ev["identity"], "sam",
            "captions are attributed to the speaker: {ev}"
        );
        assert_eq!(
            ev["attributes"]["lk.transcribed_track_id"],
            sam_track.as_str()
        );
        assert!(
            ev["attributes"]["lk.segment_id"]
                .as_str()
                .is_some_and(|s| !s.is_empty())
        );
        match ev["attributes"]["lk.transcription_final"].as_str() {
            Some("true") => finals.push(ev["text"].as_str().unwrap().to_string()),
            Some("false") => interims += 1,
            other => panic!("lk.transcription_final is {other:?}"),
        }
    }
    // Legacy packets travel separately from the text streams: give the last ones a moment.
    while let Some(ev) = listener
        .wait_for(Duration::from_secs(2), |e| e["event"] == "transcription")
        .await
    {
        assert_eq!(ev["identity"], "sam");
        legacy += 1;
    }
    let heard = finals.join(" ");
    let wer = word_error_rate(&expected, &heard);
    println!("finals: {finals:#?}\ninterims: {interims}, legacy packets: {legacy}, WER {wer:.3}");
    assert!(wer <= 0.15, "WER {wer:.3}: heard {heard:?}");
    assert!(interims >= 1, "interim captions while speaking");
    assert!(legacy >= finals.len(), "legacy transcription packets too");

    // Every final is in the durable journal.
    let journal = std::fs::read_dir(data_dir.join("transcripts"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let entries = Journal::read(&journal).unwrap();
    assert_eq!(
        entries.iter().map(|e| e.text.clone()).collect::<Vec<_>>(),
        finals
    );
    assert!(
        entries
            .iter()
            .all(|e| e.participant == "sam" && e.room == "caption-room" && e.end_ms > e.start_ms)
    );
    assert!(
        entries.windows(2).all(|w| w[0].start_ms < w[1].start_ms),
        "timestamps in order"
    );
    sam.stop().await;
    listener.stop().await;
    std::fs::remove_dir_all(data_dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silence_noise_and_tones_produce_no_caption() {
    let _serial = SERIAL.lock().await;
    init();
    let server = LocalLiveKitServer::start().await.unwrap();
    let data_dir = std::env::temp_dir().join(format!("captions-quiet-{}", std::process::id()));
    let _worker = captioning_worker(&server, &data_dir).await;
    let dir = fixtures();
    // 10 s silence, 10 s white noise, 10 s of a chord that steps like a melody.
    let noise = meeting_agent::audio::wav::read_i16(&dir.join("noise-white.wav"))
        .unwrap()
        .0;
    let mut clip = vec![0i16; 480_000];
    clip.extend(noise.iter().cycle().take(480_000).map(|&s| s / 2));
    for i in 0..480_000usize {
        let f = [262.0, 330.0, 392.0, 523.0][(i / 48_000) % 4];
        let t = i as f64 / 48_000.0;
        clip.push(
            (((2.0 * std::f64::consts::PI * f * t).sin()
                + 0.5 * (2.0 * std::f64::consts::PI * f * 1.5 * t).sin())
                * 6000.0) as i16,
        );
    }
    let wav = data_dir.with_extension("wav");
    write_i16(&wav, &clip, 48_000, 1).unwrap();

    let mut listener = PythonParticipant::spawn(
        &server,
        "quiet-room",
        "lee",
        &["--tone-hz", "0", "--video", "none"],
    )
    .unwrap();
    listener
        .wait_for(Duration::from_secs(30), |e| e["event"] == "connected")
        .await
        .unwrap();
    let mut player = speak_once(&server, "quiet-room", "noisy", &wav);
    player
        .wait_for(Duration::from_secs(60), |e| e["event"] == "wav_finished")
        .await
        .expect("the clip plays");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let caption = listener
        .wait_for(Duration::from_millis(100), |e| {
            e["event"] == "text_stream" || e["event"] == "transcription"
        })
        .await;
    assert!(
        caption.is_none(),
        "no caption on silence, noise or tones: {caption:?}"
    );
    player.stop().await;
    listener.stop().await;
    std::fs::remove_file(wav).ok();
    std::fs::remove_dir_all(data_dir).ok();
}

/// Splits the caption fixture after its third sentence into two clips of the same length, one
/// speaking first and silent after, the other silent first and speaking after.
fn turn_taking_clips(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (samples, _, _) = meeting_agent::audio::wav::read_i16(&dir.join("captions.wav")).unwrap();
    // Sentence ends: the 1.5 s pauses; find the third by counting long quiet stretches.
    let loud: Vec<bool> = samples
        .chunks(480)
        .map(|c| c.iter().map(|&s| (s as f64).powi(2)).sum::<f64>() / 480.0 > 1e4)
        .collect();
    let (mut pauses, mut quiet, mut split) = (0, 0, 0);
    for (i, &l) in loud.iter().enumerate() {
        quiet = if l { 0 } else { quiet + 1 };
        if quiet == 100 && i > 150 {
            pauses += 1;
            if pauses == 3 {
                split = (i - 50) * 480;
                break;
            }
        }
    }
    assert!(split > 0, "three pauses in the fixture");
    let mut first = samples[..split].to_vec();
    first.resize(samples.len(), 0);
    let mut second = vec![0i16; split];
    second.extend_from_slice(&samples[split..]);
    let base = std::env::temp_dir().join(format!("turns-{}", std::process::id()));
    let (a, b) = (base.with_extension("a.wav"), base.with_extension("b.wav"));
    write_i16(&a, &first, 48_000, 1).unwrap();
    write_i16(&b, &second, 48_000, 1).unwrap();
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_speakers_taking_turns_are_each_captioned_under_their_own_name() {
    let _serial = SERIAL.lock().await;
    init();
    let server = LocalLiveKitServer::start().await.unwrap();
    let data_dir = std::env::temp_dir().join(format!("captions-turns-{}", std::process::id()));
    let _worker = captioning_worker(&server, &data_dir).await;
    let dir = fixtures();
    let lines: Vec<String> = std::fs::read_to_string(dir.join("captions.txt"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let (clip_a, clip_b) = turn_taking_clips(&dir);

    let mut listener = PythonParticipant::spawn(
        &server,
        "turns-room",
        "lee",
        &["--tone-hz", "0", "--video", "none"],
    )
    .unwrap();
    listener
        .wait_for(Duration::from_secs(30), |e| e["event"] == "connected")
        .await
        .unwrap();
    let ann = PythonParticipant::spawn(
        &server,
        "turns-room",
        "ann",
        &[
            "--wav",
            clip_a.to_str().unwrap(),
            "--once",
            "--video",
            "none",
        ],
    )
    .unwrap();
    let mut bob = PythonParticipant::spawn(
        &server,
        "turns-room",
        "bob",
        &[
            "--wav",
            clip_b.to_str().unwrap(),
            "--once",
            "--video",
            "none",
        ],
    )
    .unwrap();
    bob.wait_for(Duration::from_secs(30), |e| e["event"] == "published")
        .await
        .unwrap();

    let mut heard: std::collections::HashMap<String, Vec<String>> = Default::default();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while heard.values().map(Vec::len).sum::<usize>() < 6 && tokio::time::Instant::now() < deadline
    {
        let Some(ev) = listener
            .wait_for(Duration::from_secs(5), is_final_caption)
            .await
        else {
            continue;
        };
        heard
            .entry(ev["identity"].as_str().unwrap().to_string())
            .or_default()
            .push(ev["text"].as_str().unwrap().to_string());
    }
    let wer = |who: &str, expected: &[String]| {
        word_error_rate(
            &expected.join(" "),
            &heard.get(who).cloned().unwrap_or_default().join(" "),
        )
    };
    let (wer_ann, wer_bob) = (wer("ann", &lines[..3]), wer("bob", &lines[3..]));
    let (ann_as_bob, bob_as_ann) = (wer("ann", &lines[3..]), wer("bob", &lines[..3]));
    println!(
        "{heard:#?}\nWER ann {wer_ann:.3} (against bob's lines {ann_as_bob:.3}), bob {wer_bob:.3} (against ann's {bob_as_ann:.3})"
    );
    // Attribution is what this test is about: each name carries its own sentences, far closer
    // to them than to the other speaker's. Whisper's own slips on the synthetic voice ("ready
    // for review" heard as "ready for the new" on some machines) are the WER tests' business.
    assert!(
        wer_ann <= 0.35
            && wer_bob <= 0.35
            && wer_ann + 0.4 < ann_as_bob
            && wer_bob + 0.4 < bob_as_ann,
        "each speaker's own sentences under their name: {heard:?}"
    );
    assert_eq!(heard.len(), 2, "only the two speakers: {heard:?}");
    for p in [ann, bob, listener] {
        p.stop().await;
    }
    std::fs::remove_file(clip_a).ok();
    std::fs::remove_file(clip_b).ok();
    std::fs::remove_dir_all(data_dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_speaker_leaving_mid_sentence_is_closed_cleanly_and_captions_go_on() {
    let _serial = SERIAL.lock().await;
    init();
    let server = LocalLiveKitServer::start().await.unwrap();
    let data_dir = std::env::temp_dir().join(format!("captions-leave-{}", std::process::id()));
    let _worker = captioning_worker(&server, &data_dir).await;
    let dir = fixtures();
    let wav = dir.join("captions.wav");

    let mut listener = PythonParticipant::spawn(
        &server,
        "leave-room",
        "lee",
        &["--tone-hz", "0", "--video", "none"],
    )
    .unwrap();
    listener
        .wait_for(Duration::from_secs(30), |e| e["event"] == "connected")
        .await
        .unwrap();
    let mut quitter = speak_once(&server, "leave-room", "quinn", &wav);
    quitter
        .wait_for(Duration::from_secs(30), |e| e["event"] == "published")
        .await
        .unwrap();
    // The first sentence starts after 1 s of silence and lasts about 2.5 s: leave in the middle.
    tokio::time::sleep(Duration::from_millis(2300)).await;
    quitter.stop().await;

    // Whatever was said is finalised (or dropped) promptly; nothing hangs.
    let partial = listener
        .wait_for(Duration::from_secs(8), is_final_caption)
        .await;
    if let Some(p) = &partial {
        assert_eq!(p["identity"], "quinn");
        assert!(
            word_error_rate(
                "The quarterly report is ready for review.",
                p["text"].as_str().unwrap()
            ) < 1.0,
            "a prefix of the sentence: {p}"
        );
    }
    // The agent keeps captioning the room.
    let mut next = speak_once(&server, "leave-room", "nora", &wav);
    next.wait_for(Duration::from_secs(30), |e| e["event"] == "published")
        .await
        .unwrap();
    let later = listener
        .wait_for(Duration::from_secs(30), |e| {
            is_final_caption(e) && e["identity"] == "nora"
        })
        .await;
    assert!(
        later.is_some(),
        "captions continue after a speaker left mid-sentence"
    );
    next.stop().await;
    listener.stop().await;
    std::fs::remove_dir_all(data_dir).ok();
}

/// Room metadata switches captions for everyone in the room: off when the room is created with
/// `{"captions.enabled": false}`, on again when the metadata changes mid-meeting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_metadata_switches_captions_off_and_on_for_the_whole_room() {
    let _serial = SERIAL.lock().await;
    init();
    let server = LocalLiveKitServer::start().await.unwrap();
    let data_dir = std::env::temp_dir().join(format!("captions-switch-{}", std::process::id()));
    let _worker = captioning_worker(&server, &data_dir).await;
    let room = "switch-room";
    let mut listener = room_with_listener(&server, room, r#"{"captions.enabled": false}"#).await;
    let wav = fixtures().join("captions.wav");
    let mut sam = speak_once(&server, room, "sam", &wav);
    sam.wait_for(Duration::from_secs(30), |e| e["event"] == "published")
        .await
        .unwrap();

    // Two sentences while captions are off for the room: nothing.
    let off_until = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::time::Instant::now() < off_until {
        let caption = listener
            .wait_for(Duration::from_millis(500), |e| {
                e["event"] == "text_stream" && e["topic"] == "lk.transcription"
            })
            .await;
        assert!(caption.is_none(), "captions are off: {caption:?}");
    }

    server
        .room_service(
            "UpdateRoomMetadata",
            &serde_json::json!({"room": room, "metadata": r#"{"captions.enabled": true}"#}),
        )
        .await
        .unwrap();
    let expected = std::fs::read_to_string(fixtures().join("captions.txt")).unwrap();
    let mut finals = Vec::new();
    for ev in final_captions(&mut listener, 3, Duration::from_secs(30)).await {
        assert_eq!(ev["identity"], "sam");
        finals.push(ev["text"].as_str().unwrap_or_default().to_string());
    }
    println!("after switching on: {finals:?}");
    // Each final is matched to the sentence it is closest to: they are the later sentences,
    // spoken after the switch (the first two were spoken while captions were off).
    let sentences: Vec<&str> = expected.lines().collect();
    let matched: Vec<(usize, f64)> = finals
        .iter()
        .map(|f| {
            sentences
                .iter()
                .map(|s| word_error_rate(s, f))
                .enumerate()
                .min_by(|a, b| a.1.total_cmp(&b.1))
                .unwrap()
        })
        .collect();
    println!("closest sentences (index, WER): {matched:?}");
    assert!(
        matched.iter().all(|&(i, _)| i >= 1),
        "nothing from before the switch: {finals:?}"
    );
    assert!(
        matched
            .iter()
            .filter(|&&(i, w)| i >= 2 && w <= 0.25)
            .count()
            >= 2,
        "captions resume for the sentences after the switch: {finals:?}"
    );
    sam.stop().await;
    listener.stop().await;
    std::fs::remove_dir_all(data_dir).ok();
}

/// Each microphone is captioned in the language asked for: the room's metadata says Spanish,
/// one participant's attribute says German. The agent's own language is English, so without
/// the settings neither would come out in its own words.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn captions_follow_the_language_the_room_and_each_participant_ask_for() {
    let _serial = SERIAL.lock().await;
    init();
    let server = LocalLiveKitServer::start().await.unwrap();
    let data_dir = std::env::temp_dir().join(format!("captions-lang-{}", std::process::id()));
    let mut config: Config = config_for(&server, "");
    config.data_dir = data_dir.clone();
    config.captions.model = meeting_agent::config::cache_dir()
        .join("models")
        .join("ggml-base.bin");
    config.captions.language = "en".into();
    // Finals only matter here; few interims keep the multilingual model within real time.
    config.captions.interim_ms = 10_000;
    let captioning = Captioning::from_config(&config)
        .expect("multilingual model (models/fetch_models.sh whisper-base)");
    let session = FeatureSet::new(config.audio)
        .with_captioning(captioning)
        .session();
    let reports = session.subscribe();
    let _worker = start_worker_with(config, Arc::new(session), reports).await;

    let room = "language-room";
    let mut listener = room_with_listener(&server, room, r#"{"captions.language": "es"}"#).await;
    let speaker = |identity: &'static str, fixture: &str, extra: &[&str]| {
        let wav = fixtures().join(fixture);
        let mut args = vec!["--wav", wav.to_str().unwrap(), "--once", "--video", "none"];
        args.extend_from_slice(extra);
        PythonParticipant::spawn(&server, room, identity, &args).unwrap()
    };
    let hans = speaker(
        "hans",
        "speech-de.wav",
        &["--attributes", "captions.language=german"],
    );
    let ana = speaker("ana", "speech-es.wav", &[]);

    // identity -> (text of its finals, languages of its legacy segments)
    let mut heard: std::collections::HashMap<String, (String, Vec<String>)> = Default::default();
    // (speaker, language, words of the sentence, how many of them must be heard): whisper base
    // on a busy machine garbles some German words from run to run ("Rutschenmorden" for "Guten
    // Morgen", "bestrechen" for "besprechen"), so most, not all, of hans's.
    let expected: [(&str, &str, &[&str], usize); 2] = [
        (
            "hans",
            "de",
            &["guten", "morgen", "heute", "besprechen", "jahr"],
            3,
        ),
        ("ana", "es", &["hoy", "presupuesto"], 2),
    ];
    let words_heard = |text: &str, words: &[&str]| {
        let text = text.to_lowercase();
        words.iter().filter(|w| text.contains(*w)).count()
    };
    let complete = |heard: &std::collections::HashMap<String, (String, Vec<String>)>| {
        expected.iter().all(|(who, _, words, need)| {
            heard
                .get(*who)
                .is_some_and(|(text, _)| words_heard(text, words) >= *need)
        })
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while !complete(&heard) && tokio::time::Instant::now() < deadline {
        let Some(ev) = listener
            .wait_for(Duration::from_secs(2), |e| {
                is_final_caption(e) || e["event"] == "transcription"
            })
            .await
        else {
            continue;
        };
        let who = ev["identity"].as_str().unwrap_or_default().to_string();
        let entry = heard.entry(who).or_default();
        if ev["event"] == "text_stream" {
            entry.0.push(' ');
            entry.0.push_str(ev["text"].as_str().unwrap_or_default());
        } else {
            for segment in ev["segments"].as_array().into_iter().flatten() {
                if segment["final"] == true {
                    entry
                        .1
                        .push(segment["language"].as_str().unwrap_or_default().into());
                }
            }
        }
    }
    println!("heard: {heard:#?}");
    for (who, language, words, need) in expected {
        let (text, languages) = heard.get(who).cloned().unwrap_or_default();
        assert!(
            words_heard(&text, words) >= need,
            "{who}: fewer than {need} of {words:?} in {text:?}"
        );
        assert!(
            !languages.is_empty() && languages.iter().all(|l| l == language),
            "{who}: segments in {languages:?}, want {language}"
        );
    }
    for p in [hans, ana, listener] {
        p.stop().await;
    }
    std::fs::remove_dir_all(data_dir).ok();
}

/// A meeting leaves its chat thread in PostgreSQL: the root message, the transcript as the
/// speaker said it, and the summary with attendance and speaking time; search finds what was
/// said, by whom and when.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_meeting_leaves_its_thread_transcript_and_summary_in_postgres() {
    let pg = meeting_agent_devtools::LocalPostgres::start().unwrap();
    meeting_thread_in(&pg.url()).await;
}

/// The same with the embedded default, SQLite.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_meeting_leaves_its_thread_transcript_and_summary_in_sqlite() {
    let dir = std::env::temp_dir().join(format!("captions-sqlite-{}", std::process::id()));
    meeting_thread_in(&format!("sqlite:{}", dir.join("store.db").display())).await;
    std::fs::remove_dir_all(dir).ok();
}

async fn meeting_thread_in(url: &str) {
    use meeting_agent::store::{SearchQuery, Store};
    let _serial = SERIAL.lock().await;
    init();
    let store = Store::connect(url).await.unwrap();
    let server = LocalLiveKitServer::start().await.unwrap();
    let data_dir = std::env::temp_dir().join(format!("captions-store-{}", std::process::id()));
    let _worker = storing_worker(&server, &data_dir, Some(store.clone())).await;
    let room = "store-room";
    let wav = fixtures().join("captions.wav");
    let mut sam = speak_once(&server, room, "sam", &wav);
    sam.wait_for(Duration::from_secs(60), |e| e["event"] == "wav_finished")
        .await
        .expect("the clip played");
    // The last final needs the end-of-utterance silence and a whisper run.
    tokio::time::sleep(Duration::from_secs(4)).await;
    sam.stop().await;
    server.close_room(room).await.unwrap();

    let meeting = loop_until(Duration::from_secs(40), || async {
        let meetings = store.meetings(Some(room)).await.ok()?;
        meetings.into_iter().find(|m| m.ended_at_ms.is_some())
    })
    .await
    .expect("the meeting ended in the store");
    let thread = store.thread(&meeting.id).await.unwrap();
    assert_eq!(thread[0].kind, "meeting");
    assert!(thread[0].text.contains("sam"), "{}", thread[0].text);
    let transcript: Vec<&str> = thread
        .iter()
        .filter(|m| m.kind == "transcript")
        .flat_map(|m| m.text.lines())
        .collect();
    assert!(
        transcript.iter().all(|l| l.contains("] sam: ")),
        "{transcript:#?}"
    );
    let segments = store.segments(&meeting.id).await.unwrap();
    assert_eq!(
        transcript.len(),
        segments.len(),
        "one transcript line per segment"
    );
    let heard: Vec<&str> = segments.iter().map(|s| s.text.as_str()).collect();
    let expected = std::fs::read_to_string(fixtures().join("captions.txt")).unwrap();
    let wer = word_error_rate(&expected, &heard.join(" "));
    assert!(wer <= 0.15, "WER {wer:.3}: {heard:?}");
    let summary = thread.last().unwrap();
    assert_eq!(summary.kind, "summary", "{thread:#?}");
    println!("{}", summary.text);
    for part in [
        "Key points",
        "Attendance",
        "sam: 0:",
        "Speaking time",
        "Participants over time",
    ] {
        assert!(summary.text.contains(part), "{part:?} in {}", summary.text);
    }
    let actions = summary
        .text
        .split("\nAction items\n")
        .nth(1)
        .expect("an action items section");
    assert!(
        actions
            .lines()
            .take_while(|l| l.starts_with("- "))
            // The request, whatever tiny.en made of "send" and "finance team" this time
            // (through Opus it has heard "end" and "fine and steam", with either window).
            .any(|l| l.contains("the budget to the") && l.contains("Friday")),
        "the request is an action item: {}",
        summary.text
    );
    assert!(
        summary
            .text
            .contains("Decisions\n- sam: We will launch the new product in March"),
        "{}",
        summary.text
    );
    let hits = store
        .search(&SearchQuery {
            text: "budget".into(),
            room: Some(room.into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let hit = hits
        .iter()
        .find(|h| h.kind == "transcript")
        .expect("the spoken phrase is found");
    assert_eq!(hit.speaker, "sam");
    let said = segments
        .iter()
        .find(|s| s.text.to_lowercase().contains("budget"))
        .unwrap();
    assert_eq!(hit.offset_ms, Some(said.start_ms));
    assert_eq!(hit.at_ms, meeting.started_at_ms + said.start_ms);
    std::fs::remove_dir_all(data_dir).ok();
}

/// Runs a GStreamer graph to its end (the test media are made by GStreamer's encoders).
fn gst_launch(graph: &str) {
    let status = std::process::Command::new("gst-launch-1.0")
        .arg("-q")
        .args(graph.split_whitespace())
        .status()
        .expect("gst-launch-1.0 (scripts/setup.sh installs it)");
    assert!(status.success(), "{graph}");
}

/// Polls `probe` every 500 ms until it gives a value or `limit` passes.
async fn loop_until<T, F, Fut>(limit: Duration, mut probe: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if let Some(v) = probe().await {
            return Some(v);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    None
}

/// Busy loops, one per core, for as long as this lives (killed on drop, also on a panic).
struct CoreHogs {
    _busy: Vec<tokio::process::Child>,
}

impl CoreHogs {
    fn start() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self {
            _busy: (0..cores)
                .map(|_| {
                    tokio::process::Command::new("sh")
                        .args(["-c", "while :; do :; done"])
                        .kill_on_drop(true)
                        .spawn()
                        .expect("sh")
                })
                .collect(),
        }
    }
}

/// Captions never stop under CPU contention: while other programs keep every core busy, a
/// participant speaks the six sentences and every one of them is captioned (later than on an
/// idle machine, but captioned): whisper uses one thread when no core is idle, since ggml's
/// threads spin at barriers and a descheduled second thread stalls every step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn captions_keep_coming_while_other_programs_saturate_the_cores() {
    let _serial = SERIAL.lock().await;
    init();
    let server = LocalLiveKitServer::start().await.unwrap();
    let data_dir = std::env::temp_dir().join(format!("captions-busy-{}", std::process::id()));
    let _worker = captioning_worker(&server, &data_dir).await;
    let room = "busy-room";
    let mut listener = room_with_listener(&server, room, "").await;
    let expected = std::fs::read_to_string(fixtures().join("captions.txt")).unwrap();
    let sentences: Vec<&str> = expected.lines().filter(|l| !l.trim().is_empty()).collect();

    let hogs = CoreHogs::start();
    let wav = fixtures().join("captions.wav");
    let mut sam = speak_once(&server, room, "sam", &wav);
    sam.wait_for(Duration::from_secs(60), |e| e["event"] == "published")
        .await
        .expect("sam publishes on a busy machine");
    let finals: Vec<String> =
        final_captions(&mut listener, sentences.len(), Duration::from_secs(120))
            .await
            .iter()
            .map(|ev| ev["text"].as_str().unwrap_or_default().to_string())
            .collect();
    drop(hogs);
    // The property is that finals keep coming: one for every sentence spoken. What they say
    // is judged over the whole transcript, not sentence by sentence: on one thread and a
    // saturated machine whisper still transcribes, but a sentence may come out rough (once
    // "Please end the budget to the fine and steam by Friday", WER 0.4 on its own, 0.08 for
    // the whole transcript), which used to fail a per-sentence bound of 0.35 although all six
    // finals had come.
    let transcript_wer = word_error_rate(&sentences.join(" "), &finals.join(" "));
    println!(
        "caption_finals_under_contention {}/{} sentences, transcript WER {transcript_wer:.2}: {finals:?}",
        finals.len(),
        sentences.len()
    );
    assert_eq!(
        finals.len(),
        sentences.len(),
        "a final for every sentence on a saturated machine: {finals:?}"
    );
    assert!(
        transcript_wer <= 0.25,
        "the finals say what was said (WER {transcript_wer:.2}): {finals:?}"
    );
    sam.stop().await;
    listener.stop().await;
    std::fs::remove_dir_all(data_dir).ok();
}

/// What a user's browser shows: livekit-client 2.23 in Chromium (tests/browser) speaks a
/// minute of recorded human speech as its microphone; the agent is dispatched into the room
/// and captions it; the page receives each final through `registerTextStreamHandler
/// ('lk.transcription')` and `RoomEvent.TranscriptionReceived`, with the text of what was said.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_speaking_real_speech_reads_captions_through_both_apis() {
    let _serial = SERIAL.lock().await;
    init();
    let server = LocalLiveKitServer::start().await.unwrap();
    let data_dir = std::env::temp_dir().join(format!("captions-browser-{}", std::process::id()));
    let _worker = captioning_worker(&server, &data_dir).await;
    let dir = meeting_agent_devtools::fixtures::with_real_speech().unwrap();
    let expected = std::fs::read_to_string(dir.join("real-speech.txt")).unwrap();
    let wav = dir.join("real-speech.wav");

    // The clip is 59.5 s; the browser goes on 12 s after it, for the last finals.
    let record =
        meeting_agent_devtools::browser::run(&server, "browser-room", "dana", &wav, 72, true)
            .await
            .unwrap();
    assert!(
        record["agent_identity"].is_string(),
        "the agent shows as a participant of kind AGENT: {}",
        record["participants"]
    );
    let track = record["mic"]["track_sid"].as_str().unwrap();
    let finals = meeting_agent_devtools::browser::finals(&record, track);
    let heard = finals
        .iter()
        .map(|f| f.text.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    let wer = word_error_rate(&expected, &heard);
    let both = finals.iter().filter(|f| f.end_time_ms.is_some()).count();
    let mut latencies = meeting_agent_devtools::browser::final_latencies_seen(&record, &finals);
    latencies.sort_by(f64::total_cmp);
    println!(
        "{} finals in the browser, {both} also through TranscriptionReceived; WER {wer:.3}; end of speech -> caption {latencies:.2?} s\n{heard}",
        finals.len()
    );
    assert!(finals.len() >= 8, "finals of twelve recordings: {heard:?}");
    assert_eq!(
        both,
        finals.len(),
        "every final also arrives as a legacy transcription"
    );
    // tiny.en on this recording: 8 % offline on the whole clip (BENCHMARKS.md); the bound
    // leaves room for cuts at pauses and a busy machine, not for missing sentences.
    assert!(wer <= 0.3, "WER {wer:.3}: heard {heard:?}");
    // Finals' end times are the speech's: a third of them at least line up with an end of
    // speech the browser heard under one offset (none would by chance). Not most: on a machine
    // running whisper at half its usual speed (2026-11-27), with a backlog, 7 of 15 did.
    assert!(
        latencies.len() * 3 >= finals.len(),
        "a third of the finals line up with an end of speech the browser heard: {latencies:?}"
    );
    std::fs::remove_dir_all(data_dir).ok();
}

/// Breakout rooms with the agent captioning in each (issue 16): a host sends two speakers
/// (clients that follow a move, as the platform's web client does) to two breakouts; each speaks
/// there once the agent has arrived, and the captions its own client receives in its breakout are
/// its words and none of the other's. Closing the breakouts brings both back; each breakout's
/// meeting thread holds its speaker's transcript, and the main meeting's thread links both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_captions_each_breakout_room() {
    use control_api::{ControlApi, ROOM};
    init();
    let _serial = SERIAL.lock().await;
    let server = LocalLiveKitServer::start().await.unwrap();
    let api = ControlApi::start(&server).await;
    let _agent = storing_worker(&server, &api.dir, Some(api.store.clone())).await;
    let seen = Duration::from_secs(30);

    let host_token = api.token("hanna", "host").await;
    let mut hanna = PythonParticipant::spawn(
        &server,
        ROOM,
        "hanna",
        &["--token", &host_token, "--tone-hz", "0", "--video", "none"],
    )
    .unwrap();
    hanna
        .wait_for(seen, |e| e["event"] == "connected")
        .await
        .expect("the host joins");
    let dir = fixtures();
    let speech = "Good morning everyone. Let's review the quarterly numbers before the product \
                  launch. Maria will send the updated budget to the finance team by Friday.";
    let captions = std::fs::read_to_string(dir.join("captions.txt")).unwrap();
    // (identity, WAV, what it says, its breakout)
    let plan = [
        ("ana", "speech.wav", speech.to_string(), 1),
        ("ben", "captions.wav", captions.replace('\n', " "), 2),
    ];
    let mut speakers = Vec::new();
    for (identity, wav, ..) in &plan {
        let token = api.token(identity, "participant").await;
        let wav = dir.join(wav);
        let mut p = PythonParticipant::spawn_script(
            &server,
            "breakout_client.py",
            identity,
            &["--token", &token, "--wav", wav.to_str().unwrap()],
        )
        .unwrap();
        p.wait_for(seen, |e| e["event"] == "connected" && e["room"] == ROOM)
            .await
            .expect("a speaker joins the meeting");
        speakers.push(p);
    }

    let (status, body) = api
        .call(
            reqwest::Method::POST,
            "/v1/rooms/standup/breakouts",
            &host_token,
            Some(serde_json::json!({"count": 2, "assignments": {"ana": 1, "ben": 2}})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    for (p, (.., n)) in speakers.iter_mut().zip(&plan) {
        let room = format!("standup--breakout-{n}");
        p.wait_for(seen, |e| {
            e["event"] == "speaking" && e["room"] == room.as_str()
        })
        .await
        .unwrap_or_else(|| panic!("{} speaks in {room} once the agent is there", p.identity));
    }
    // Each client's captions, in its breakout: its own words, none of the other's.
    for (i, (p, (identity, _, said, n))) in speakers.iter_mut().zip(&plan).enumerate() {
        let other = &plan[1 - i].2;
        let room = format!("standup--breakout-{n}");
        let mut heard = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
        while heard.join(" ").split_whitespace().count() < said.split_whitespace().count() * 3 / 4
            && tokio::time::Instant::now() < deadline
        {
            if let Some(ev) = p.wait_for(Duration::from_secs(2), is_final_caption).await {
                assert_eq!(ev["room"], room.as_str(), "{ev}");
                heard.push(ev["text"].as_str().unwrap().to_string());
            }
        }
        let heard = heard.join(" ");
        // Collection stops at three quarters of the words: what was said up to there is the
        // reference (a whole sentence more or less moves WER by a third).
        let said_so_far = said
            .split_whitespace()
            .take(heard.split_whitespace().count())
            .collect::<Vec<_>>()
            .join(" ");
        let (wer, wer_other) = (
            word_error_rate(&said_so_far, &heard),
            word_error_rate(other, &heard),
        );
        println!(
            "{identity} in {room}: WER {wer:.3} (against the other's words {wer_other:.3}): {heard}"
        );
        assert!(
            wer <= 0.35 && wer + 0.4 < wer_other,
            "{identity}: WER {wer:.3}, against the other's words {wer_other:.3}: heard {heard:?}"
        );
    }
    // Each breakout's thread keeps its own speaker's transcript.
    let ana_stored = stored_transcript(&api, "standup--breakout-1", "morning").await;
    assert!(!ana_stored.contains("clearly"), "{ana_stored}");
    let ben_stored = stored_transcript(&api, "standup--breakout-2", "clearly").await;
    assert!(!ben_stored.contains("morning"), "{ben_stored}");

    // Closing brings everyone back.
    let (status, body) = api
        .call(
            reqwest::Method::DELETE,
            "/v1/rooms/standup/breakouts",
            &host_token,
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    for p in speakers.iter_mut() {
        p.wait_for(seen, |e| e["event"] == "connected" && e["room"] == ROOM)
            .await
            .unwrap_or_else(|| panic!("{} is back in the main room", p.identity));
    }
    for p in speakers {
        p.stop().await;
    }
    hanna.stop().await;
    server.close_room(ROOM).await.unwrap();
    let main = loop_until(Duration::from_secs(60), || async {
        api.store
            .meetings(Some(ROOM))
            .await
            .ok()?
            .into_iter()
            .find(|m| m.ended_at_ms.is_some())
    })
    .await
    .expect("the main meeting ends");
    let thread = api.store.thread(&main.id).await.unwrap();
    let links = thread.iter().filter(|m| m.kind == "breakout").count();
    assert_eq!(links, 2, "{thread:#?}");
    std::fs::remove_dir_all(&api.dir).ok();
}

/// The transcript (lower case) the store holds for the meeting in `room`, once it has `word`.
async fn stored_transcript(api: &control_api::ControlApi, room: &str, word: &str) -> String {
    loop_until(Duration::from_secs(30), || async {
        let meeting = api
            .store
            .meetings(Some(room))
            .await
            .ok()?
            .into_iter()
            .next()?;
        let text: Vec<String> = api
            .store
            .thread(&meeting.id)
            .await
            .ok()?
            .into_iter()
            .filter(|m| m.kind == "transcript")
            .map(|m| m.text)
            .collect();
        let text = text.join(" ").to_lowercase();
        text.contains(word).then_some(text)
    })
    .await
    .unwrap_or_else(|| panic!("no transcript with {word:?} stored for {room}"))
}

/// Voice and video messages (issue 17): the formats people send, made here from the spoken
/// sentences with GStreamer's encoders, each queued as a message's attachment and transcribed by
/// a media worker into the store (SQLite): transcript, duration, waveform, a video's size, and
/// the transcript found by search. Bad files fail at once with a reason a person can read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn voice_and_video_messages_in_every_format_are_transcribed() {
    use meeting_agent::media_messages::worker::{MediaWorker, Outcome};
    init();
    let _serial = SERIAL.lock().await;
    let dir = std::env::temp_dir().join(format!("media-formats-{}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    let media = dir.join("media");
    std::fs::create_dir_all(&media).unwrap();
    let speech = fixtures().join("speech.wav");
    let speech = speech.to_str().unwrap();
    let audio = format!("filesrc location={speech} ! wavparse ! audioconvert ! audioresample");
    let video = "videotestsrc num-buffers=240 ! video/x-raw,width=320,height=240,framerate=25/1";
    let made = [
        (
            "voice.ogg",
            format!("{audio} ! opusenc ! oggmux ! filesink location=OUT"),
        ),
        (
            "voice.webm",
            format!("{audio} ! opusenc ! webmmux ! filesink location=OUT"),
        ),
        (
            "voice.mp3",
            format!("{audio} ! lamemp3enc ! filesink location=OUT"),
        ),
        (
            "voice.m4a",
            format!("{audio} ! voaacenc ! mp4mux ! filesink location=OUT"),
        ),
        (
            "video.mp4",
            format!(
                "{video} ! x264enc ! mux. {audio} ! voaacenc ! mux. mp4mux name=mux ! filesink location=OUT"
            ),
        ),
        (
            "video-vp8.webm",
            format!(
                "{video} ! vp8enc deadline=1 ! mux. {audio} ! opusenc ! mux. webmmux name=mux ! filesink location=OUT"
            ),
        ),
        (
            "video-vp9.webm",
            format!(
                "{video} ! vp9enc deadline=1 ! mux. {audio} ! opusenc ! mux. webmmux name=mux ! filesink location=OUT"
            ),
        ),
    ];
    for (name, graph) in &made {
        gst_launch(&graph.replace("OUT", media.join(name).to_str().unwrap()));
    }
    std::fs::copy(speech, media.join("voice.wav")).unwrap();
    // An MP3 sent as .ogg: judged by its bytes.
    std::fs::copy(media.join("voice.mp3"), media.join("mislabelled.ogg")).unwrap();
    let mut corrupt = b"OggS".to_vec();
    corrupt.extend((0..20_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    std::fs::write(media.join("corrupt.ogg"), corrupt).unwrap();
    std::fs::write(media.join("empty.webm"), b"").unwrap();
    std::fs::write(media.join("document.ogg"), b"%PDF-1.7\n%binary").unwrap();
    write_i16(
        &media.join("silence.wav"),
        &vec![0i16; 48_000 * 3],
        48_000,
        1,
    )
    .unwrap();

    let store =
        meeting_agent::store::Store::connect(&format!("sqlite:{}", dir.join("store.db").display()))
            .await
            .unwrap();
    let config = Config {
        data_dir: dir.clone(),
        ..Default::default()
    };
    let captioning = Captioning::from_config(&config).unwrap().unwrap();
    let worker = MediaWorker::new(
        store.clone(),
        captioning.clone(),
        config.media_messages.clone(),
        media.clone(),
        None,
        "meeting-agent".into(),
    );
    let names = [
        "voice.wav",
        "voice.ogg",
        "voice.webm",
        "voice.mp3",
        "voice.m4a",
        "video.mp4",
        "video-vp8.webm",
        "video-vp9.webm",
        "mislabelled.ogg",
        "corrupt.ogg",
        "empty.webm",
        "document.ogg",
        "silence.wav",
        "missing.ogg",
    ];
    // The attachments are posted in a meeting's chat (search covers meeting threads; direct
    // messages stay out of it).
    let meeting = meeting_agent::store::Meeting::new("standup", 1);
    store
        .open_meeting(
            &meeting,
            &meeting.root_message("meeting-agent", "Standup".into()),
        )
        .await
        .unwrap();
    for name in names {
        store
            .post(&[meeting_agent::store::Message {
                id: format!("msg-{name}"),
                conversation_id: meeting.id.clone(),
                sender_id: "ana".into(),
                recipient_id: None,
                reply_to: None,
                kind: "chat".into(),
                text: String::new(),
                created_at_ms: 1,
            }])
            .await
            .unwrap();
        assert!(
            store
                .enqueue_media(&format!("msg-{name}"), &format!("file:{name}"), 1)
                .await
                .unwrap()
        );
    }
    let mut outcomes = std::collections::BTreeMap::new();
    while let Some((message, outcome)) = worker.run_once().await.unwrap() {
        outcomes.insert(message.trim_start_matches("msg-").to_string(), outcome);
    }
    assert_eq!(outcomes.len(), names.len(), "{outcomes:#?}");
    let said = "Good morning everyone. Let's review the quarterly numbers before the product \
                launch. Maria will send the updated budget to the finance team by Friday.";
    for name in &names[..9] {
        let Outcome::Done(result) = &outcomes[*name] else {
            panic!("{name}: {:?}", outcomes[*name]);
        };
        let wer = word_error_rate(said, &result.transcript);
        println!(
            "{name}: {:?} {} {} ms {:?}x{:?}, WER {wer:.3}: {}",
            result.container,
            result.kind,
            result.duration_ms,
            result.width,
            result.height,
            result.transcript
        );
        assert!(wer <= 0.2, "{name}: {}", result.transcript);
        assert!(
            (10_500..11_700).contains(&result.duration_ms),
            "{name}: {}",
            result.duration_ms
        );
        assert_eq!(result.waveform.len(), 64);
        assert!(
            result.waveform.iter().any(|&p| p > 0.1),
            "{name}: a waveform with speech"
        );
        assert_eq!(result.language, "en");
        let is_video = name.starts_with("video");
        assert_eq!(
            result.kind,
            if is_video { "video" } else { "audio" },
            "{name}"
        );
        if is_video {
            assert_eq!(
                (result.width, result.height),
                (Some(320), Some(240)),
                "{name}"
            );
            // The poster: the first picture, a JPEG of the video's size, in the media folder.
            let poster = result.poster.as_deref().expect("a poster");
            let file = media.join(poster.strip_prefix("file:").expect("beside the attachment"));
            let picture = image::open(&file).unwrap();
            assert_eq!((picture.width(), picture.height()), (320, 240), "{name}");
        } else {
            assert_eq!(result.poster, None);
        }
        let job = store
            .media_job(&format!("msg-{name}"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(job.status, meeting_agent::store::JobStatus::Done);
        assert_eq!(job.attempts, 1);
    }
    for (name, reason) in [
        ("corrupt.ogg", "cannot be decoded"),
        ("empty.webm", "empty"),
        ("document.ogg", "not a supported format"),
        ("missing.ogg", "missing"),
    ] {
        let Outcome::Failed(why) = &outcomes[name] else {
            panic!("{name}: {:?}", outcomes[name]);
        };
        assert!(why.contains(reason), "{name}: {why}");
        let job = store
            .media_job(&format!("msg-{name}"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(job.status, meeting_agent::store::JobStatus::Failed);
        assert_eq!(job.attempts, 1, "a bad file is not retried");
        assert_eq!(job.error.as_deref(), Some(why.as_str()));
    }
    let Outcome::Done(silence) = &outcomes["silence.wav"] else {
        panic!("{:?}", outcomes["silence.wav"]);
    };
    assert_eq!(silence.transcript, "");
    assert_eq!(silence.duration_ms, 3000);
    assert!(silence.waveform.iter().all(|&p| p == 0.0));

    // The transcripts reply to their messages in the conversation, and search finds them.
    let thread = store.thread(&meeting.id).await.unwrap();
    let transcripts: Vec<_> = thread
        .iter()
        .filter(|m| m.kind == "media_transcript")
        .collect();
    assert_eq!(transcripts.len(), 9, "one per message with speech");
    assert!(
        transcripts
            .iter()
            .all(|m| m.reply_to.as_deref() == Some(&m.id[..m.id.len() - "/transcript".len()]))
    );
    let hits = store
        .search(&meeting_agent::store::SearchQuery {
            // Words every format's transcript has (tiny.en hears "finance team" as "fine and
            // steam" after Opus on some machines).
            text: "quarterly budget".into(),
            room: None,
            speaker: None,
            since_ms: None,
            until_ms: None,
            limit: 50,
        })
        .await
        .unwrap();
    assert!(
        hits.iter().filter(|h| h.kind == "media_transcript").count() >= 8,
        "{hits:#?}"
    );

    // Longer than the limit: refused with that reason.
    let mut short = config.media_messages.clone();
    short.max_seconds = 5;
    let strict = MediaWorker::new(
        store.clone(),
        captioning,
        short,
        media.clone(),
        None,
        "meeting-agent".into(),
    );
    store
        .enqueue_media("msg-long", "file:voice.ogg", 1)
        .await
        .unwrap();
    let (_, outcome) = strict.run_once().await.unwrap().unwrap();
    assert!(
        matches!(&outcome, Outcome::Failed(why) if why.contains("longer than 5 s")),
        "{outcome:?}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// A video message kept in S3 (s3s-fs, which checks signatures): the worker fetches it by key,
/// transcribes it and puts its poster back into the bucket. With S3 gone the job is retried,
/// not failed, and done once S3 is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_video_message_in_s3_is_transcribed_and_s3_going_away_loses_nothing() {
    use meeting_agent::media_messages::worker::{MediaWorker, Outcome};
    use meeting_agent::recording::s3::S3Store;
    init();
    let _serial = SERIAL.lock().await;
    let mut s3 = meeting_agent_devtools::LocalS3::start().await.unwrap();
    std::fs::create_dir_all(s3.dir.join("media")).unwrap();
    let bucket = std::sync::Arc::new(S3Store::new(&s3.config("media")).unwrap());
    let dir = std::env::temp_dir().join(format!("media-s3-{}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    std::fs::create_dir_all(&dir).unwrap();
    let clip = dir.join("clip.mp4");
    let speech = fixtures().join("speech.wav");
    let graph = format!(
        "videotestsrc num-buffers=240 ! video/x-raw,width=320,height=240,framerate=25/1 ! x264enc ! mux. \
         filesrc location={} ! wavparse ! audioconvert ! audioresample ! voaacenc ! mux. \
         mp4mux name=mux ! filesink location={}",
        speech.display(),
        clip.display()
    );
    gst_launch(&graph);
    let bytes = std::fs::read(&clip).unwrap();
    for key in ["uploads/a.mp4", "uploads/b.mp4"] {
        bucket
            .put_object(key, bytes.clone(), "video/mp4")
            .await
            .unwrap();
    }
    let store =
        meeting_agent::store::Store::connect(&format!("sqlite:{}", dir.join("store.db").display()))
            .await
            .unwrap();
    let mut config = Config {
        data_dir: dir.clone(),
        ..Default::default()
    };
    config.media_messages.retry_secs = 1;
    let worker = MediaWorker::new(
        store.clone(),
        Captioning::from_config(&config).unwrap().unwrap(),
        config.media_messages.clone(),
        dir.join("media"),
        Some(bucket.clone()),
        "meeting-agent".into(),
    );
    store
        .enqueue_media("msg-a", "s3:uploads/a.mp4", 1)
        .await
        .unwrap();
    let (_, outcome) = worker.run_once().await.unwrap().unwrap();
    let Outcome::Done(result) = outcome else {
        panic!("{outcome:?}");
    };
    assert!(
        result.transcript.contains("budget"),
        "{}",
        result.transcript
    );
    let poster = result.poster.as_deref().unwrap();
    let key = poster
        .strip_prefix("s3:")
        .expect("the poster goes back to the bucket");
    let picture = image::load_from_memory(&bucket.get_object(key).await.unwrap()).unwrap();
    assert_eq!((picture.width(), picture.height()), (320, 240));
    assert!(
        std::fs::read_dir(dir.join("media").join(".work")).is_ok_and(|mut d| d.next().is_none()),
        "the fetched copy is removed"
    );

    // S3 goes away: the job is retried, not failed; it is done once S3 is back.
    s3.stop().await;
    store
        .enqueue_media("msg-b", "s3:uploads/b.mp4", 1)
        .await
        .unwrap();
    let (_, outcome) = worker.run_once().await.unwrap().unwrap();
    assert!(matches!(outcome, Outcome::Retry(_)), "{outcome:?}");
    let job = store.media_job("msg-b").await.unwrap().unwrap();
    assert_eq!(job.status, meeting_agent::store::JobStatus::Queued);
    assert!(
        job.error
            .as_deref()
            .is_some_and(|e| e.contains("cannot fetch")),
        "{job:?}"
    );
    s3.resume().await.unwrap();
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let (_, outcome) = worker.run_once().await.unwrap().unwrap();
    assert!(matches!(outcome, Outcome::Done(_)), "{outcome:?}");
    assert_eq!(store.media_job("msg-b").await.unwrap().unwrap().attempts, 2);
    std::fs::remove_dir_all(&dir).ok();
}
