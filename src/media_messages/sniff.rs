//! What an attachment is, from its first bytes (never its name or declared type: a mislabelled
//! file is judged by what it holds). Only the containers people's apps send are accepted.

use super::MediaError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Container {
    /// RIFF/WAVE.
    Wav,
    /// Ogg (Opus from browsers' MediaRecorder).
    Ogg,
    /// Matroska/WebM (Opus, VP8, VP9 from browsers).
    WebM,
    /// ISO BMFF: MP4 and M4A (AAC from iOS, H.264).
    Mp4,
    /// MPEG audio layer 3, with or without an ID3 tag.
    Mp3,
}

/// Bytes [`sniff`] needs.
pub const SNIFF_BYTES: usize = 12;

pub fn sniff(head: &[u8]) -> Result<Container, MediaError> {
    if head.is_empty() {
        return Err(MediaError::Bad("the file is empty".into()));
    }
    let starts = |magic: &[u8]| head.starts_with(magic);
    let container = if starts(b"RIFF") && head.get(8..12) == Some(b"WAVE") {
        Container::Wav
    } else if starts(b"OggS") {
        Container::Ogg
    } else if starts(&[0x1A, 0x45, 0xDF, 0xA3]) {
        Container::WebM
    } else if head.get(4..8) == Some(b"ftyp") {
        Container::Mp4
    } else if starts(b"ID3") || (head.len() >= 2 && head[0] == 0xFF && head[1] & 0xE0 == 0xE0) {
        Container::Mp3
    } else {
        return Err(MediaError::Bad(
            "not a supported format: send WebM, Ogg, MP4/M4A, MP3 or WAV".into(),
        ));
    };
    Ok(container)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containers_are_known_by_their_bytes_and_others_refused() {
        assert_eq!(sniff(b"RIFF\0\0\0\0WAVEfmt ").unwrap(), Container::Wav);
        assert_eq!(sniff(b"OggS\0\x02").unwrap(), Container::Ogg);
        assert_eq!(
            sniff(&[0x1A, 0x45, 0xDF, 0xA3, 1]).unwrap(),
            Container::WebM
        );
        assert_eq!(sniff(b"\0\0\0\x20ftypM4A ").unwrap(), Container::Mp4);
        assert_eq!(sniff(b"ID3\x04").unwrap(), Container::Mp3);
        assert_eq!(sniff(&[0xFF, 0xFB, 0x90]).unwrap(), Container::Mp3);
        for bad in [
            &b""[..],
            b"%PDF-1.7",
            b"\x89PNG\r\n",
            b"RIFF\0\0\0\0AVI ",
            b"hello",
        ] {
            assert!(matches!(sniff(bad), Err(MediaError::Bad(_))), "{bad:?}");
        }
    }
}
