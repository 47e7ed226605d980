//! The GStreamer graphs the recorder runs, as description files in `pipelines/` (gst-launch
//! syntax, `#` comment lines, `{placeholder}`s the recorder fills). The repository's files are
//! built in; `recording.pipelines_dir` points at a folder whose files replace them one by one,
//! and `recording.video_encoder` replaces just the encoder. Everything is checked when the
//! recorder starts, so a bad graph is an error at start, not a failed recording later.

use std::path::{Path, PathBuf};
use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;

use super::RecordingError;

/// One description file: its name in `pipelines/` and the built-in copy.
struct GraphFile {
    name: &'static str,
    builtin: &'static str,
}

const COMPOSITE: GraphFile = GraphFile {
    name: "recording.gst",
    builtin: include_str!("../../pipelines/recording.gst"),
};
const PARTICIPANT_AUDIO: GraphFile = GraphFile {
    name: "participant-audio.gst",
    builtin: include_str!("../../pipelines/participant-audio.gst"),
};
const LIVE_INPUTS: GraphFile = GraphFile {
    name: "recording-live-inputs.gst",
    builtin: include_str!("../../pipelines/recording-live-inputs.gst"),
};
const VIDEO_ENCODER: GraphFile = GraphFile {
    name: "video-encoder.gst",
    builtin: include_str!("../../pipelines/video-encoder.gst"),
};
const DECODE_VIDEO: GraphFile = GraphFile {
    name: "decode-video.gst",
    builtin: include_str!("../../pipelines/decode-video.gst"),
};
const DECODE_AUDIO: GraphFile = GraphFile {
    name: "decode-audio.gst",
    builtin: include_str!("../../pipelines/decode-audio.gst"),
};

/// A description file larger than this is not a graph description.
const MAX_FILE_BYTES: u64 = 64 * 1024;
/// How long the encoder may take over its test pictures at start.
const ENCODER_PROBE_TIMEOUT: Duration = Duration::from_secs(20);

/// The loaded descriptions, each with its source (for error messages).
#[derive(Debug, Clone)]
pub struct Graphs {
    pub composite: Graph,
    /// One participant's microphone on its own (per-participant recordings).
    pub participant_audio: Graph,
    pub live_inputs: Graph,
    pub video_encoder: Graph,
    pub decode_video: Graph,
    pub decode_audio: Graph,
}

#[derive(Debug, Clone)]
pub struct Graph {
    /// Where it came from: `pipelines/<name>` (built in), a file, or `recording.video_encoder`.
    pub source: String,
    text: String,
}

impl Graph {
    fn new(source: impl Into<String>, text: &str) -> Self {
        Self {
            source: source.into(),
            text: strip_comments(text),
        }
    }

    /// The description with every `{name}` replaced by its value. A placeholder without a
    /// value is an error naming the file.
    pub fn render(&self, values: &[(&str, &str)]) -> Result<String, RecordingError> {
        let mut out = self.text.clone();
        for (name, value) in values {
            out = out.replace(&format!("{{{name}}}"), value);
        }
        if let Some(start) = out.find('{') {
            let rest = &out[start..];
            let end = rest.find('}').map_or(rest.len(), |i| i + 1);
            return Err(RecordingError::Pipeline(format!(
                "{}: unknown placeholder {}",
                self.source,
                &rest[..end]
            )));
        }
        Ok(out)
    }
}

/// Drops `#` comment lines and joins the rest into one line.
fn strip_comments(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join(" ")
}

impl Graphs {
    /// The repository's `pipelines/` as built in.
    pub fn builtin() -> Self {
        let graph = |f: &GraphFile| Graph::new(format!("pipelines/{}", f.name), f.builtin);
        Self {
            composite: graph(&COMPOSITE),
            participant_audio: graph(&PARTICIPANT_AUDIO),
            live_inputs: graph(&LIVE_INPUTS),
            video_encoder: graph(&VIDEO_ENCODER),
            decode_video: graph(&DECODE_VIDEO),
            decode_audio: graph(&DECODE_AUDIO),
        }
    }

    /// The built-in graphs, with each file present in `dir` (when not empty) in place of its
    /// built-in copy, and `video_encoder` (when not empty) in place of the encoder.
    pub fn load(dir: &Path, video_encoder: &str) -> Result<Self, RecordingError> {
        let mut graphs = Self::builtin();
        if !dir.as_os_str().is_empty() {
            if !dir.is_dir() {
                return Err(RecordingError::Pipeline(format!(
                    "recording.pipelines_dir {} is not a folder",
                    dir.display()
                )));
            }
            for (file, graph) in [
                (&COMPOSITE, &mut graphs.composite),
                (&PARTICIPANT_AUDIO, &mut graphs.participant_audio),
                (&LIVE_INPUTS, &mut graphs.live_inputs),
                (&VIDEO_ENCODER, &mut graphs.video_encoder),
                (&DECODE_VIDEO, &mut graphs.decode_video),
                (&DECODE_AUDIO, &mut graphs.decode_audio),
            ] {
                let path = dir.join(file.name);
                if path.is_file() {
                    *graph = Graph::new(path.display().to_string(), &read_bounded(&path)?);
                }
            }
        }
        if !video_encoder.trim().is_empty() {
            graphs.video_encoder = Graph::new("recording.video_encoder", video_encoder);
        }
        Ok(graphs)
    }
}

fn read_bounded(path: &PathBuf) -> Result<String, RecordingError> {
    let error =
        |message: String| RecordingError::Pipeline(format!("{}: {message}", path.display()));
    let size = std::fs::metadata(path)
        .map_err(|e| error(e.to_string()))?
        .len();
    if size > MAX_FILE_BYTES {
        return Err(error(format!(
            "{size} bytes; a graph description is smaller"
        )));
    }
    std::fs::read_to_string(path).map_err(|e| error(e.to_string()))
}

/// Parses `description` into a pipeline, requiring the elements named in `names`.
pub fn parse(
    source: &str,
    description: &str,
    names: &[&str],
) -> Result<gst::Pipeline, RecordingError> {
    let pipeline = gst::parse::launch(description)
        .map_err(|e| {
            let hint = if e.matches(gst::ParseError::NoSuchElement) {
                " (scripts/setup.sh installs the GStreamer plugins the built-in graphs use)"
            } else {
                ""
            };
            RecordingError::Pipeline(format!("{source}: {e}{hint}"))
        })?
        .downcast::<gst::Pipeline>()
        .map_err(|_| RecordingError::Pipeline(format!("{source}: not a pipeline")))?;
    for name in names {
        if pipeline.by_name(name).is_none() {
            return Err(RecordingError::Pipeline(format!(
                "{source}: the recorder needs an element named {name}"
            )));
        }
    }
    Ok(pipeline)
}

/// Runs the rendered encoder over a few test pictures and requires H.264 out of it: an
/// element missing or a hardware encoder without its hardware fails here, at start.
pub fn probe_encoder(source: &str, encoder: &str) -> Result<(), RecordingError> {
    let description = format!(
        "videotestsrc num-buffers=3 ! video/x-raw,format=I420,width=320,height=180,framerate=30/1 \
         ! {encoder} ! video/x-h264 ! fakesink"
    );
    let pipeline = parse(source, &description, &[])?;
    let fail = |message: String| {
        RecordingError::Pipeline(format!(
            "{source}: encoding a test picture failed: {message}"
        ))
    };
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| fail(e.to_string()))?;
    let bus = pipeline.bus().ok_or_else(|| fail("no bus".into()))?;
    let outcome = match bus.timed_pop_filtered(
        gst::ClockTime::from_nseconds(ENCODER_PROBE_TIMEOUT.as_nanos() as u64),
        &[gst::MessageType::Eos, gst::MessageType::Error],
    ) {
        Some(message) => match message.view() {
            gst::MessageView::Error(e) => Err(fail(e.error().to_string())),
            _ => Ok(()),
        },
        None => Err(fail(format!("no output within {ENCODER_PROBE_TIMEOUT:?}"))),
    };
    let _ = pipeline.set_state(gst::State::Null);
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_go_and_placeholders_are_filled() {
        let graph = Graph::new(
            "test",
            "# a comment\nvideotestsrc num-buffers={n}\n  ! fakesink\n",
        );
        assert_eq!(
            graph.render(&[("n", "3")]).unwrap(),
            "videotestsrc num-buffers=3 ! fakesink"
        );
    }

    #[test]
    fn an_unfilled_placeholder_is_named_with_its_file() {
        let graph = Graph::new("pipelines/x.gst", "x264enc bitrate={video_kbps} ! {oops}");
        let error = graph.render(&[("video_kbps", "100")]).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("pipelines/x.gst: unknown placeholder {oops}")
        );
    }

    #[test]
    fn files_in_the_folder_replace_the_built_in_ones() {
        let dir = std::env::temp_dir().join(format!("graphs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("video-encoder.gst"), "# mine\nopenh264enc\n").unwrap();
        let graphs = Graphs::load(&dir, "").unwrap();
        assert_eq!(graphs.video_encoder.render(&[]).unwrap(), "openh264enc");
        assert_eq!(graphs.composite.source, "pipelines/recording.gst");
        // The setting wins over the folder.
        let graphs = Graphs::load(&dir, "x264enc").unwrap();
        assert_eq!(graphs.video_encoder.source, "recording.video_encoder");
        std::fs::remove_dir_all(&dir).ok();
        assert!(
            Graphs::load(&dir, "").is_err(),
            "a missing folder is an error"
        );
    }

    #[test]
    fn an_encoder_that_cannot_encode_fails_the_probe() {
        gst::init().unwrap();
        let error = probe_encoder("recording.video_encoder", "no-such-encoder").unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("recording pipeline: recording.video_encoder")
        );
        // Raw video is not H.264: the caps after the encoder refuse it.
        assert!(probe_encoder("recording.video_encoder", "identity").is_err());
        probe_encoder("x264", "x264enc speed-preset=ultrafast").unwrap();
    }
}
