//! The project's own model conversion transcribes as well as the workplace's reference
//! conversion, and the offline path (denoiser -> segmenter -> recognizer) reads the fixture.

use std::path::Path;
use std::sync::Arc;

use meeting_agent::audio::wav::read_i16;
use meeting_agent::captions::model::sha256_file;
use meeting_agent::captions::recognizer::RecognizerOptions;
use meeting_agent::captions::wer::word_error_rate;
use meeting_agent::captions::{Recognizer, WhisperModel};
use meeting_agent::config::{CaptionsConfig, TINY_EN_SHA256};
use meeting_agent_devtools::bench::asr::utterances;

fn fixtures() -> std::path::PathBuf {
    meeting_agent_devtools::fixtures::dir().unwrap()
}

async fn transcribe(model: &Path) -> String {
    let (samples, _, _) = read_i16(&fixtures().join("captions.wav")).unwrap();
    let recognizer = Recognizer::start(
        WhisperModel::load(model, None).unwrap(),
        RecognizerOptions {
            language: Some("en".into()),
            translate: false,
            threads: 2,
            ..Default::default()
        },
    )
    .unwrap();
    let mut texts = Vec::new();
    for audio in utterances(&samples) {
        texts.push(recognizer.final_(audio).await.unwrap().unwrap().text);
    }
    texts.join(" ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_conversion_transcribes_the_fixture_like_the_reference() {
    let ours = CaptionsConfig::default().model;
    assert_eq!(
        sha256_file(&ours).expect("models/fetch_models.sh has run"),
        TINY_EN_SHA256,
        "the conversion matches models/manifest.toml"
    );
    let expected = std::fs::read_to_string(fixtures().join("captions.txt")).unwrap();
    let heard = transcribe(&ours).await;
    let wer = word_error_rate(&expected, &heard);
    assert!(wer <= 0.15, "WER {wer:.3}: {heard}");

    // The reference conversion is only on this workplace's machines (never a dependency).
    let reference = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/models/ggml-tiny.en.bin");
    if reference.is_file() {
        assert_eq!(
            transcribe(&reference).await,
            heard,
            "same text as the reference conversion"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn captions_are_no_worse_with_noise_suppression() {
    use meeting_agent::audio::quality::mix_at_snr;
    use meeting_agent_devtools::bench::asr::utterances_from;
    use meeting_agent_devtools::fixtures::load_f32;

    let speech = load_f32("captions.wav").unwrap();
    let noise: Vec<f32> = load_f32("noise-white.wav")
        .unwrap()
        .into_iter()
        .cycle()
        .take(speech.len())
        .collect();
    let expected = std::fs::read_to_string(fixtures().join("captions.txt")).unwrap();
    let model = CaptionsConfig::default().model;
    let recognizer = Recognizer::start(
        WhisperModel::load(&model, None).unwrap(),
        RecognizerOptions {
            language: Some("en".into()),
            translate: false,
            threads: 2,
            ..Default::default()
        },
    )
    .unwrap();
    let mut both = Vec::new();
    for snr in [5.0, 10.0] {
        let mix: Vec<i16> = mix_at_snr(&speech, &noise, snr)
            .iter()
            .map(|&s| s.round() as i16)
            .collect();
        let mut wer = Vec::new();
        for denoised in [false, true] {
            let mut texts = Vec::new();
            for audio in utterances_from(&mix, denoised) {
                texts.push(recognizer.final_(audio).await.unwrap().unwrap().text);
            }
            println!("denoised={denoised}: {}", texts.join(" "));
            wer.push(word_error_rate(&expected, &texts.join(" ")));
        }
        println!(
            "white noise at {snr} dB: WER without denoise {:.3}, with {:.3}",
            wer[0], wer[1]
        );
        both.push(wer);
    }
    // Over both noise levels (46 words each): at 10 dB a fitted encoder window made the two
    // differ by a few words either way from run to run, at 5 dB denoising halves the WER.
    let raw = both.iter().map(|w| w[0]).sum::<f64>();
    let denoised = both.iter().map(|w| w[1]).sum::<f64>();
    assert!(
        denoised <= raw + 0.02,
        "denoise must not hurt captions: {both:?}"
    );
}

/// The multilingual model (models/fetch_models.sh whisper-base) names the language it hears
/// when none is configured, and translates into English when asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_multilingual_model_detects_the_language_and_translates() {
    use meeting_agent::config::{BASE_SHA256, cache_dir};
    let model = cache_dir().join("models").join("ggml-base.bin");
    let start = |translate: bool| {
        Recognizer::start(
            WhisperModel::load(&model, Some(BASE_SHA256))
                .expect("models/fetch_models.sh whisper-base has run"),
            RecognizerOptions {
                language: None,
                translate,
                threads: 2,
                ..Default::default()
            },
        )
        .unwrap()
    };
    let (detect, translate) = (start(false), start(true));
    // (fixture, language, words of the original, words an English translation has)
    let cases = [
        (
            "speech-de.wav",
            "de",
            // Not the sentence's last word: on some machines (AVX-512 kernels) the base model
            // garbles the espeak voice's "für das nächste Jahr" ("für passende Hände").
            ["guten morgen", "heute"],
            ["morning", "today"],
        ),
        (
            "speech-es.wav",
            "es",
            ["buenos días", "año"],
            ["morning", "today"],
        ),
    ];
    for (fixture, language, original, english) in cases {
        let (samples, _, _) = read_i16(&fixtures().join(fixture)).unwrap();
        let audio: Vec<f32> = utterances(&samples).concat();
        let heard = detect.final_(audio.clone()).await.unwrap().unwrap();
        println!("{fixture}: [{}] {}", heard.language, heard.text);
        assert_eq!(heard.language, language, "{fixture}: {}", heard.text);
        let text = heard.text.to_lowercase();
        for word in original {
            assert!(text.contains(word), "{fixture}: {word:?} not in {text:?}");
        }
        let translated = translate.final_(audio).await.unwrap().unwrap();
        println!("{fixture} in English: {}", translated.text);
        let text = translated.text.to_lowercase();
        for word in english {
            assert!(text.contains(word), "{fixture}: {word:?} not in {text:?}");
        }
        assert!(
            !text.contains(original[0]),
            "{fixture}: not translated: {text:?}"
        );
    }
}

/// Dropping the recognizer stops the decode under way instead of leaving it running (into
/// process exit, where it raced whisper's destructors): the drop returns within its bound, the
/// thread having ended, and the final under way answers an error instead of a transcript.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_recognizer_stops_the_decode_under_way() {
    let (samples, _, _) = read_i16(&fixtures().join("captions.wav")).unwrap();
    // The base model on the whole fixture (tens of seconds) decodes for seconds on 2 cores.
    let audio: Vec<f32> = utterances(&samples).concat();
    let model = meeting_agent::config::cache_dir()
        .join("models")
        .join("ggml-base.bin");
    let recognizer = Recognizer::start(
        WhisperModel::load(&model, Some(meeting_agent::config::BASE_SHA256)).unwrap(),
        RecognizerOptions {
            language: Some("en".into()),
            translate: false,
            threads: 2,
            ..Default::default()
        },
    )
    .unwrap();
    let pending = Arc::try_unwrap(recognizer).ok().unwrap();
    // Past the recognizer's start-up speed measurement: the next final is decoded at once.
    pending.final_(vec![0.0; 16_000]).await.unwrap().unwrap();
    let reply = pending.final_(audio);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    tokio::task::spawn_blocking(move || drop(pending))
        .await
        .unwrap();
    let took = started.elapsed();
    assert!(
        took < meeting_agent::captions::recognizer::STOP_WAIT,
        "drop took {took:?}"
    );
    let answer = reply.await;
    assert!(
        matches!(answer, Ok(Err(_))),
        "the decode was stopped, not finished: {answer:?}"
    );
}
