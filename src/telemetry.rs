//! Structured logging set-up.
//!
//! Logged values often come from participants (identities, names, room names, caption text).
//! Whatever they contain, one event stays one line: in text mode every control character but
//! the event's final newline is escaped (`\n`, `\r`, `\t`, `\u{1b}`, ...), as are the Unicode
//! line and paragraph separators, and colours are off; in JSON mode (the default) the encoder
//! escapes control characters and the writer also escapes DEL, C1 controls and the separators
//! (as `\u00XX` / `\u2028`, still valid JSON).

use std::io::Write;

use tracing_subscriber::fmt::MakeWriter;

use crate::config::LogFormat;

/// whisper.cpp's model-loading and per-decode lines are many and say little: warnings and errors
/// only, unless the filter names `whisper_rs` itself.
const WHISPER_DEFAULT: &str = "whisper_rs=warn";

/// Installs the global tracing subscriber (text or JSON lines, on stderr).
pub fn init_logging(format: LogFormat, filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(with_whisper_default(filter))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("info,{WHISPER_DEFAULT}")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(EscapingStderr { format });
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

fn with_whisper_default(filter: &str) -> String {
    if filter.contains("whisper_rs") {
        filter.to_string()
    } else if filter.trim().is_empty() {
        WHISPER_DEFAULT.to_string()
    } else {
        format!("{filter},{WHISPER_DEFAULT}")
    }
}

/// Standard error, through [`Escaping`].
#[derive(Debug, Clone, Copy)]
struct EscapingStderr {
    format: LogFormat,
}

impl<'a> MakeWriter<'a> for EscapingStderr {
    type Writer = Escaping<std::io::Stderr>;

    fn make_writer(&'a self) -> Self::Writer {
        Escaping::new(std::io::stderr(), self.format)
    }
}

/// A writer that receives whole formatted events (the formatter writes each event with one
/// `write_all`) and escapes what could break or forge lines before passing them on.
pub struct Escaping<W: Write> {
    inner: W,
    format: LogFormat,
}

impl<W: Write> Escaping<W> {
    pub fn new(inner: W, format: LogFormat) -> Self {
        Self { inner, format }
    }
}

/// `event` (one formatted log event) with its characters escaped so that it is one line: only
/// a final `\n` stays.
pub fn escape_event(event: &str, format: LogFormat) -> String {
    let (body, newline) = match event.strip_suffix('\n') {
        Some(body) => (body, "\n"),
        None => (event, ""),
    };
    let mut out = String::with_capacity(event.len() + 8);
    for c in body.chars() {
        let unsafe_char = c.is_control() || matches!(c, '\u{2028}' | '\u{2029}');
        if !unsafe_char {
            out.push(c);
            continue;
        }
        match format {
            // JSON's encoder escapes the C0 controls already; these are valid in JSON strings
            // (where alone they can be) either way.
            LogFormat::Json => out.push_str(&format!("\\u{:04x}", c as u32)),
            LogFormat::Text => match c {
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            },
        }
    }
    out.push_str(newline);
    out
}

impl<W: Write> Write for Escaping<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        self.inner
            .write_all(escape_event(&text, self.format).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn whisper_logs_are_quiet_unless_asked_for() {
        assert_eq!(super::with_whisper_default("info"), "info,whisper_rs=warn");
        assert_eq!(
            super::with_whisper_default("debug,whisper_rs=debug"),
            "debug,whisper_rs=debug"
        );
        assert_eq!(super::with_whisper_default(" "), "whisper_rs=warn");
    }

    use std::sync::{Arc, Mutex};

    use super::*;

    /// A shared buffer the subscriber writes into through [`Escaping`].
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    struct BufferWriter(Arc<Mutex<Vec<u8>>>);

    impl Write for BufferWriter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    struct MakeBuffer(Buffer, LogFormat);

    impl<'a> MakeWriter<'a> for MakeBuffer {
        type Writer = Escaping<BufferWriter>;
        fn make_writer(&'a self) -> Self::Writer {
            Escaping::new(BufferWriter((self.0).0.clone()), self.1)
        }
    }

    const HOSTILE: &str = "eve\n2025-01-01T00:00:00.000000Z  INFO meeting_agent: participant joined identity=admin\r\u{1b}[31mred\u{9b}\u{2028}x";

    fn log_with(format: LogFormat) -> String {
        let buffer = Buffer::default();
        let builder = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(MakeBuffer(buffer.clone(), format));
        let log = || {
            tracing::info!(identity = %HOSTILE, "participant joined");
            tracing::warn!("message with {HOSTILE} inside");
        };
        match format {
            LogFormat::Json => {
                tracing::subscriber::with_default(builder.json().flatten_event(true).finish(), log)
            }
            LogFormat::Text => tracing::subscriber::with_default(builder.finish(), log),
        }
        String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn hostile_identities_cannot_forge_text_log_lines() {
        let out = log_with(LogFormat::Text);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{out}");
        assert!(lines[0].contains("participant joined"), "{out}");
        assert!(
            lines[0].contains("eve\\n2025-01-01T00:00:00.000000Z  INFO"),
            "{out}"
        );
        // (tracing-subscriber escapes ESC and C1 itself in some versions; either way, escaped.)
        assert!(lines[0].contains("admin\\r"), "{out}");
        assert!(lines[0].contains("\\u{2028}x"), "{out}");
        assert!(
            !out.chars()
                .any(|c| (c.is_control() && c != '\n') || c == '\u{2028}'),
            "{out:?}"
        );
    }

    #[test]
    fn json_logs_stay_one_valid_object_per_line() {
        let out = log_with(LogFormat::Json);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{out}");
        let first: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(first["identity"], HOSTILE, "the value survives, escaped");
        let second: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
        assert!(second["message"].as_str().unwrap().contains(HOSTILE));
        assert!(
            !out.chars()
                .any(|c| (c.is_control() && c != '\n') || c == '\u{2028}'),
            "{out:?}"
        );
    }

    #[test]
    fn only_the_final_newline_stays() {
        assert_eq!(
            escape_event("a\nb\u{7f}\n", LogFormat::Text),
            "a\\nb\\u{7f}\n"
        );
        assert_eq!(escape_event("a\u{85}b", LogFormat::Json), "a\\u0085b");
    }
}
