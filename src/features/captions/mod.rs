//! Live captions: every microphone, as the meeting hears it, through the process's recognizer;
//! published into the room (`lk.transcription` and transcription packets), journaled, and sent
//! to the meeting log. `captions.enabled` and `captions.language` switch a participant (or the
//! room).

mod microphone;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use tokio::sync::mpsc;

use crate::captions::journal::Journal;
use crate::captions::publisher::CaptionPublisher;
use crate::captions::segmenter::SegmenterConfig;
use crate::captions::speaker::CaptionContext;
use crate::captions::{CaptionLanguage, Recognizer};
use crate::config::ConfigError;
use crate::features::meeting_log::MeetingLog;
use crate::livekit::{TrackKind, TrackSource};
use crate::protocol::{CAPTIONS_ENABLED, CAPTIONS_LANGUAGE, CAPTIONS_SCREEN_SHARE};
use crate::session::feature::FinishFuture;
use crate::session::switches::ParticipantSwitches;
use crate::session::{ParticipantChange, RoomContext, RoomFeature, TrackContext};
pub use microphone::CAPTION_FRAMES_DROPPED;

/// So `/metrics` lists them before their first event.
pub fn register_metrics() {
    CAPTION_FRAMES_DROPPED.get();
    crate::captions::recognizer::FINALS_REFUSED.get();
    crate::captions::recognizer::FINALS_QUEUED.get();
    crate::captions::recognizer::SPEED_GAUGE.get();
}

/// Checks the `[captions]` settings only this feature understands (the language's name).
pub fn check_config(config: &crate::config::CaptionsConfig) -> Result<(), ConfigError> {
    CaptionLanguage::parse(&config.language)
        .map(|_| ())
        .map_err(|e| ConfigError::Invalid {
            field: "captions.language",
            problem: e.to_string(),
        })
}

/// Captioning for the whole process: one recognizer, transcripts under `data_dir`.
#[derive(Clone)]
pub struct Captioning {
    pub recognizer: Arc<Recognizer>,
    pub data_dir: std::path::PathBuf,
    pub segmenter: SegmenterConfig,
}

impl Captioning {
    /// Loads the configured model (checked by sha256) and starts the recognizer; `None` when
    /// captions are switched off.
    pub fn from_config(
        config: &crate::config::Config,
    ) -> Result<Option<Self>, crate::captions::ModelError> {
        let c = &config.captions;
        if !c.enabled {
            return Ok(None);
        }
        let model = crate::captions::WhisperModel::load(&c.model, c.expected_sha256())?;
        let options = crate::captions::recognizer::RecognizerOptions {
            // Validated with the configuration; names become codes, `auto` detection.
            language: match CaptionLanguage::parse(&c.language) {
                Ok(CaptionLanguage::Code(code)) => Some(code.to_string()),
                _ => None,
            },
            translate: c.translate,
            threads: c.threads,
            final_window: c.final_window,
        };
        let recognizer =
            Recognizer::start(model, options).map_err(|e| crate::captions::ModelError::Load {
                path: c.model.clone(),
                message: e.to_string(),
            })?;
        Ok(Some(Self {
            recognizer,
            data_dir: config.data_dir(),
            segmenter: SegmenterConfig {
                interim_every_ms: c.interim_ms,
                ..Default::default()
            },
        }))
    }
}

/// One participant's caption switches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaptionSettings {
    pub enabled: bool,
    pub language: CaptionLanguage,
}

impl CaptionSettings {
    /// The participant's attributes win over the room's switches; a language that is not one is
    /// ignored (with a warning) rather than breaking the microphone's captions.
    pub fn resolve(room: &HashMap<String, String>, attributes: &HashMap<String, String>) -> Self {
        let language = [("participant", attributes), ("room", room)]
            .into_iter()
            .find_map(|(source, values)| {
                let value = values.get(CAPTIONS_LANGUAGE)?;
                CaptionLanguage::parse(value)
                    .inspect_err(
                        |e| tracing::warn!(source, error = %e, "ignoring caption language"),
                    )
                    .ok()
            })
            .unwrap_or_default();
        Self {
            enabled: crate::session::switches::flag(CAPTIONS_ENABLED, true, room, attributes),
            language,
        }
    }

    fn of(room: &RoomContext, identity: &str) -> Self {
        Self::resolve(&room.switches, room.attributes_of(identity))
    }
}

impl crate::session::Feature for Captioning {
    fn name(&self) -> &'static str {
        "captions"
    }

    fn open(&self, room: &mut RoomContext) -> Option<Box<dyn RoomFeature>> {
        let journal = match Journal::open(&self.data_dir, &room.name, room.started_unix_ms) {
            Ok(j) => Some(j),
            Err(e) => {
                tracing::error!(error = %e, dir = %self.data_dir.display(), "cannot open the transcript journal; captions are not kept");
                None
            }
        };
        Some(Box::new(RoomCaptions {
            ctx: CaptionContext {
                recognizer: self.recognizer.clone(),
                publisher: CaptionPublisher::Room(room.room.clone()),
                journal,
                segmenter: self.segmenter.clone(),
                finals: room.shared.get::<MeetingLog>().map(MeetingLog::finals_sink),
            },
            settings: ParticipantSwitches::default(),
            recognizer: self.recognizer.clone(),
        }))
    }
}

struct RoomCaptions {
    ctx: CaptionContext,
    /// Each participant's switches, watched by its microphones' caption tasks; dropping a
    /// participant's sender finalises what they were saying.
    settings: ParticipantSwitches<CaptionSettings>,
    recognizer: Arc<Recognizer>,
}

impl RoomFeature for RoomCaptions {
    fn on_participant(&mut self, _room: &RoomContext, change: &ParticipantChange) {
        if let ParticipantChange::Left { identity } = change {
            self.settings.remove(identity);
        }
    }

    fn on_track(&mut self, room: &RoomContext, track: &mut TrackContext) {
        if track.kind != TrackKind::KindAudio {
            return;
        }
        // A screen share's sound is captioned only when asked (`captions.screen_share`, for a
        // share that starts after): a shared video is not its presenter speaking. When asked,
        // its captions name its own track, so clients tell them from the microphone's.
        if track.source == TrackSource::SourceScreenshareAudio
            && !room.flag(&track.participant, CAPTIONS_SCREEN_SHARE, false)
        {
            return;
        }
        let current = CaptionSettings::of(room, &track.participant);
        let settings = self.settings.watch(&track.participant, current);
        let (frames_tx, frames) = mpsc::channel(microphone::QUEUE_FRAMES);
        let active = Arc::new(AtomicBool::new(current.enabled));
        tokio::spawn(
            microphone::MicrophoneCaptions {
                ctx: self.ctx.clone(),
                participant: track.participant.clone(),
                sid: track.sid.clone(),
                origin_ms: track.origin_ms,
                active: active.clone(),
            }
            .run(frames, settings),
        );
        track.add_audio_sink(Box::new(microphone::CaptionSink::new(frames_tx, active)));
    }

    fn on_settings(&mut self, room: &RoomContext) {
        self.settings
            .refresh(|identity| CaptionSettings::of(room, identity));
    }

    fn finish(self: Box<Self>, _room: &mut RoomContext) -> FinishFuture {
        let stats = &self.recognizer.stats;
        let load = |v: &std::sync::atomic::AtomicU64| v.load(std::sync::atomic::Ordering::Relaxed);
        tracing::info!(
            finals_requested = load(&stats.finals_requested),
            finals_transcribed = load(&stats.finals_transcribed),
            final_decodes = load(&stats.finals),
            interims = load(&stats.interims),
            interims_superseded = load(&stats.interims_superseded),
            finals_fitted = load(&stats.finals_fitted),
            busy_ms = load(&stats.busy_ms),
            "captioning totals for this process"
        );
        // The microphones' tasks finalise what they hold when their settings close.
        Box::pin(async {})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_participants_language_wins_and_junk_falls_back_to_the_rooms() {
        let none = HashMap::new();
        assert_eq!(
            CaptionSettings::resolve(&none, &none),
            CaptionSettings {
                enabled: true,
                language: CaptionLanguage::Default
            }
        );
        let room = crate::session::switches::room_switches(
            r#"{"captions.enabled": false, "captions.language": "de"}"#,
        );
        let s = CaptionSettings::resolve(&room, &none);
        assert!(!s.enabled);
        assert_eq!(s.language, CaptionLanguage::Code("de"));
        let spanish: HashMap<_, _> = [
            (CAPTIONS_LANGUAGE.to_string(), "es".to_string()),
            (CAPTIONS_ENABLED.to_string(), "true".to_string()),
        ]
        .into();
        let s = CaptionSettings::resolve(&room, &spanish);
        assert!(s.enabled, "the participant's switch wins");
        assert_eq!(s.language, CaptionLanguage::Code("es"));
        let junk: HashMap<_, _> = [(CAPTIONS_LANGUAGE.to_string(), "klingon".to_string())].into();
        assert_eq!(
            CaptionSettings::resolve(&room, &junk).language,
            CaptionLanguage::Code("de"),
            "an unknown language falls back to the room's"
        );
    }
}
