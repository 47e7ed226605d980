//! A meeting's transcript as WebVTT, SRT, JSON or plain text.

use std::str::FromStr;

use crate::store::Segment;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    WebVtt,
    Srt,
    Json,
    Text,
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "vtt" | "webvtt" => Ok(Self::WebVtt),
            "srt" => Ok(Self::Srt),
            "json" => Ok(Self::Json),
            "txt" | "text" => Ok(Self::Text),
            other => Err(format!(
                "unknown transcript format {other:?}: vtt, srt, json or txt"
            )),
        }
    }
}

fn timestamp(ms: i64, decimal: char) -> String {
    let ms = ms.max(0);
    format!(
        "{:02}:{:02}:{:02}{decimal}{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

/// Cue text may not contain a blank line (it would end the cue) or, in WebVTT, "-->".
fn cue_text(text: &str, vtt: bool) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if vtt {
        one_line
            .replace("-->", "->")
            .replace('&', "&amp;")
            .replace('<', "&lt;")
    } else {
        one_line
    }
}

pub fn export(segments: &[Segment], format: Format) -> String {
    match format {
        Format::WebVtt => {
            let mut out = String::from("WEBVTT\n");
            for s in segments {
                out.push_str(&format!(
                    "\n{} --> {}\n<v {}>{}\n",
                    timestamp(s.start_ms, '.'),
                    timestamp(s.end_ms, '.'),
                    cue_text(&s.speaker, true).replace('>', "&gt;"),
                    cue_text(&s.text, true)
                ));
            }
            out
        }
        Format::Srt => segments
            .iter()
            .enumerate()
            .map(|(i, s)| {
                format!(
                    "{}\n{} --> {}\n{}: {}\n\n",
                    i + 1,
                    timestamp(s.start_ms, ','),
                    timestamp(s.end_ms, ','),
                    s.speaker,
                    cue_text(&s.text, false)
                )
            })
            .collect(),
        Format::Json => serde_json::to_string_pretty(segments).unwrap_or_else(|_| "[]".into()),
        Format::Text => segments
            .iter()
            .map(|s| {
                format!(
                    "[{}] {}: {}\n",
                    crate::summary::clock(s.start_ms),
                    s.speaker,
                    s.text
                )
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segments() -> Vec<Segment> {
        vec![
            Segment {
                key: "a".into(),
                speaker: "sam".into(),
                text: "Hello <everyone> & welcome.".into(),
                start_ms: 1_500,
                end_ms: 3_250,
            },
            Segment {
                key: "b".into(),
                speaker: "ann".into(),
                text: "Budget --> Friday\n\nok".into(),
                start_ms: 3_661_001,
                end_ms: 3_662_000,
            },
        ]
    }

    #[test]
    fn every_format_keeps_times_speakers_and_text() {
        let vtt = export(&segments(), Format::WebVtt);
        assert!(vtt.starts_with("WEBVTT\n\n00:00:01.500 --> 00:00:03.250\n<v sam>Hello &lt;everyone> &amp; welcome.\n"), "{vtt}");
        assert!(
            vtt.contains("01:01:01.001 --> 01:01:02.000\n<v ann>Budget -> Friday ok\n"),
            "{vtt}"
        );
        let srt = export(&segments(), Format::Srt);
        assert!(
            srt.starts_with(
                "1\n00:00:01,500 --> 00:00:03,250\nsam: Hello <everyone> & welcome.\n\n2\n"
            ),
            "{srt}"
        );
        let json: Vec<serde_json::Value> =
            serde_json::from_str(&export(&segments(), Format::Json)).unwrap();
        assert_eq!(json[1]["text"], "Budget --> Friday\n\nok");
        assert_eq!(
            export(&segments(), Format::Text).lines().next(),
            Some("[0:01] sam: Hello <everyone> & welcome.")
        );
        assert!("doc".parse::<Format>().is_err());
    }
}
