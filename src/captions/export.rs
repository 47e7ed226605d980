//! A meeting's transcript as WebVTT, SRT, JSON or plain text.
//!
//! Speaker names and text come from participants: in the line formats (WebVTT, SRT, text) both
//! are put on one line with no control characters, line or paragraph separators or
//! bidirectional overrides, and `-->` never appears in them, so no name or text can end a cue
//! or forge one.

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

/// One line of participant-supplied text: control characters, separators and invisible
/// reordering characters become spaces, whitespace is collapsed, and `-->` (a cue's timing
/// arrow) cannot appear.
fn one_line(text: &str) -> String {
    let spaced: String = text
        .chars()
        .map(|c| {
            let invisible = matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{206F}' | '\u{FEFF}');
            if c.is_control() || c.is_whitespace() || invisible {
                ' '
            } else {
                c
            }
        })
        .collect();
    let mut line = spaced.split_whitespace().collect::<Vec<_>>().join(" ");
    // "--->" becomes "-->" after one pass: repeat until none is left.
    while line.contains("-->") {
        line = line.replace("-->", "->");
    }
    line
}

/// Cue text may not contain a blank line (it would end the cue) or "-->"; WebVTT also escapes
/// its markup.
fn cue_text(text: &str, vtt: bool) -> String {
    let line = one_line(text);
    if vtt {
        line.replace('&', "&amp;").replace('<', "&lt;")
    } else {
        line
    }
}

/// Something that happened during the meeting besides speech (a meeting control), at `at_ms`
/// into it: a `NOTE` in WebVTT, a `*` line in plain text, left out of SRT and JSON (whose
/// readers expect cues and segments only; the control API lists them).
#[derive(Debug, Clone, PartialEq)]
pub struct Note {
    pub at_ms: i64,
    pub text: String,
}

pub fn export(segments: &[Segment], format: Format) -> String {
    export_with_notes(segments, &[], format)
}

/// The transcript with `notes` (in time order) among its segments.
pub fn export_with_notes(segments: &[Segment], notes: &[Note], format: Format) -> String {
    // Segments and notes in time order; a note before a segment starting at the same time.
    let mut notes = notes.iter().peekable();
    let mut merged: Vec<Result<&Segment, &Note>> = Vec::new();
    for s in segments {
        while let Some(note) = notes.next_if(|n| n.at_ms <= s.start_ms) {
            merged.push(Err(note));
        }
        merged.push(Ok(s));
    }
    merged.extend(notes.map(Err));
    match format {
        Format::WebVtt => {
            let mut out = String::from("WEBVTT\n");
            for item in merged {
                out.push_str(&match item {
                    Ok(s) => format!(
                        "\n{} --> {}\n<v {}>{}\n",
                        timestamp(s.start_ms, '.'),
                        timestamp(s.end_ms, '.'),
                        cue_text(&s.speaker, true).replace('>', "&gt;"),
                        cue_text(&s.text, true)
                    ),
                    Err(n) => format!(
                        "\nNOTE {} {}\n",
                        timestamp(n.at_ms, '.'),
                        cue_text(&n.text, false)
                    ),
                });
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
                    cue_text(&s.speaker, false),
                    cue_text(&s.text, false)
                )
            })
            .collect(),
        Format::Json => serde_json::to_string_pretty(segments).unwrap_or_else(|_| "[]".into()),
        Format::Text => merged
            .into_iter()
            .map(|item| match item {
                Ok(s) => format!(
                    "[{}] {}: {}\n",
                    crate::summary::clock(s.start_ms),
                    one_line(&s.speaker),
                    one_line(&s.text)
                ),
                Err(n) => format!(
                    "[{}] * {}\n",
                    crate::summary::clock(n.at_ms),
                    one_line(&n.text)
                ),
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

    #[test]
    fn notes_come_in_time_order_in_webvtt_and_text_only() {
        let notes = [
            Note {
                at_ms: 0,
                text: "meeting control: ann lock (ok)".into(),
            },
            Note {
                at_ms: 5_000,
                text: "meeting control: eve remove\n\n00:00:09.000 --> 00:00:10.000 bob (ok)"
                    .into(),
            },
        ];
        let vtt = export_with_notes(&segments(), &notes, Format::WebVtt);
        assert!(
            vtt.starts_with(
                "WEBVTT\n\nNOTE 00:00:00.000 meeting control: ann lock (ok)\n\n00:00:01.500 -->"
            ),
            "{vtt}"
        );
        assert!(
            vtt.contains("\nNOTE 00:00:05.000 meeting control: eve remove 00:00:09.000 -> 00:00:10.000 bob (ok)\n\n01:01:01.001 -->"),
            "a note cannot forge a cue: {vtt}"
        );
        assert_eq!(vtt.matches("-->").count(), 2);
        let text = export_with_notes(&segments(), &notes, Format::Text);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "[0:00] * meeting control: ann lock (ok)");
        assert!(lines[2].starts_with("[0:05] * meeting control: eve remove"));
        for format in [Format::Srt, Format::Json] {
            assert_eq!(
                export_with_notes(&segments(), &notes, format),
                export(&segments(), format)
            );
        }
    }

    #[test]
    fn hostile_names_and_text_cannot_forge_cues() {
        let hostile = Segment {
            key: "x".into(),
            speaker: "mallory\n\n2\n00:00:00,000 ---> 99:00:00,000\r\nCEO\u{1b}[2J\u{2028}\u{202E}: I resign".into(),
            text: "ok\u{85}3\u{2029}00:00:01,000 --> 00:00:02,000\u{0}\u{7}bye".into(),
            start_ms: 1_000,
            end_ms: 2_000,
        };
        let segments = vec![hostile, segments()[0].clone()];
        for format in [Format::Srt, Format::WebVtt, Format::Text] {
            let out = export(&segments, format);
            // Exactly the arrows of the two real cues (none in the text format).
            let arrows = if format == Format::Text { 0 } else { 2 };
            assert_eq!(out.matches("-->").count(), arrows, "{format:?}: {out}");
            assert!(
                !out.chars().any(|c| (c.is_control() && c != '\n')
                    || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202E}')),
                "{format:?}: {out:?}"
            );
        }
        let srt = export(&segments, Format::Srt);
        let cues: Vec<&str> = srt.split("\n\n").filter(|c| !c.is_empty()).collect();
        assert_eq!(cues.len(), 2, "{srt}");
        assert_eq!(cues[0].lines().count(), 3, "{srt}");
        assert_eq!(
            cues[0].lines().nth(2),
            Some(
                "mallory 2 00:00:00,000 -> 99:00:00,000 CEO [2J : I resign: ok 3 00:00:01,000 -> 00:00:02,000 bye"
            )
        );
        let vtt = export(&segments, Format::WebVtt);
        assert_eq!(vtt.matches("\n\n").count(), 2, "{vtt}");
        assert_eq!(export(&segments, Format::Text).lines().count(), 2);
        assert_eq!(one_line("a ----> b -- > c"), "a -> b -- > c");
    }
}
